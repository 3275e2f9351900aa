"""`python -m services.reporting verify --bundle DIR` is the stand-alone verifier's command."""

import argparse
import base64
import json

from services.reporting.commands import verify
from services.reporting.settings import ReportingSettings
from tests.unit.test_ledger_verifier import SIGNER, Log, events


def args_of(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    verify.add_arguments(parser)
    return parser.parse_args(argv)


async def test_verify_bundle_exits_0_on_an_export_and_1_naming_the_first_bad_index(
    tmp_path, capsys
):
    bundle = Log(events(20)).write(tmp_path / "b")
    settings = ReportingSettings(
        database_url="postgresql://unused@127.0.0.1/none", auth_jwks_file=tmp_path / "jwks.json"
    )
    args = args_of("--bundle", str(bundle), "--key", SIGNER.verifier_key)
    assert await verify.run(args, settings) == 0
    assert capsys.readouterr().out.startswith("OK ")

    lines = [json.loads(line) for line in (bundle / "entries.jsonl").read_text().splitlines()]
    entry = bytearray(base64.b64decode(lines[7]["entry"]))
    entry[-3] ^= 1
    lines[7]["entry"] = base64.b64encode(bytes(entry)).decode()
    (bundle / "entries.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert await verify.run(args, settings) == 1
    assert "first bad index: 7" in capsys.readouterr().out
