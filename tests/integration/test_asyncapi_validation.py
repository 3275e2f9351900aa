"""The event contract passes the AsyncAPI project's own parser: its AsyncAPI 3.0 schema (with the
Kafka bindings' schemas), its reference resolution and its ruleset (an operation's messages must
be its channel's, ...). Errors and warnings fail; information (such as "3.1.0 exists") does not.

The parser (@asyncapi/parser, pinned in deploy/asyncapi/package-lock.json) is installed under
.state/asyncapi by deploy/local/install-asyncapi-parser.sh, which `make install` runs: these
tests fail, never skip, when it or Node.js is missing.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from shared.events.asyncapi import platform_document, render, service_document
from shared.registry import SERVICE_NAMES

REPO = Path(__file__).resolve().parents[2]
PARSER = REPO / ".state" / "asyncapi"
VALIDATE = REPO / "deploy" / "asyncapi" / "validate.cjs"


def validate(*files: Path) -> tuple[int, list[dict[str, Any]]]:
    """Run the parser on the files: its exit status and each line it printed."""
    node = shutil.which("node")
    if node is None:
        pytest.fail("Node.js is not installed: run deploy/local/install-system-packages.sh")
    if not (PARSER / "node_modules" / "@asyncapi" / "parser").is_dir():
        pytest.fail(
            "the AsyncAPI parser is not installed: run deploy/local/install-asyncapi-parser.sh"
        )
    result = subprocess.run(
        [node, str(VALIDATE), str(PARSER), *map(str, files)],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert result.returncode == 0 or lines, result.stderr
    return result.returncode, lines


def test_the_parser_accepts_docs_asyncapi_json_and_every_services_view(tmp_path: Path):
    views = []
    for name in SERVICE_NAMES:
        view = tmp_path / f"{name}.json"
        view.write_text(render(service_document(name)))
        views.append(view)
    status, lines = validate(REPO / "docs" / "asyncapi.json", *views)
    problems = [line for line in lines if line.get("severity") in ("error", "warning")]
    assert status == 0, problems
    parsed = [line for line in lines if "parsed" in line]
    assert [line["parsed"] for line in parsed] == [True] * (1 + len(SERVICE_NAMES))
    assert {line["version"] for line in parsed} == {"3.0.0"}


def test_the_parser_refuses_a_wrong_reference_and_a_wrong_kafka_binding(tmp_path: Path):
    # Proves the parser really checks: each document with one mistake fails (one run for both).
    wrong_message = platform_document()
    send = wrong_message["operations"]["change.publish.itsm.change.events"]
    send["messages"] = [
        {"$ref": "#/channels/itsm.incident.events/messages/itsm.incident.created.v1"}
    ]
    no_partitions = platform_document()
    no_partitions["channels"]["itsm.change.events"]["bindings"]["kafka"]["partitions"] = 0
    files = [tmp_path / "wrong-message.json", tmp_path / "no-partitions.json"]
    for file, document in zip(files, (wrong_message, no_partitions), strict=True):
        file.write_text(render(document))
    status, lines = validate(*files)
    assert status == 1
    errors = {
        file.name: [
            line for line in lines if line["file"] == str(file) and line.get("severity") == "error"
        ]
        for file in files
    }
    assert "asyncapi3-operation-messages-from-referred-channel" in {
        line["code"] for line in errors["wrong-message.json"]
    }, lines
    assert any("partitions" in line["path"] for line in errors["no-partitions.json"]), lines
