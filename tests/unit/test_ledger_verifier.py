"""The stand-alone verifier against export bundles that a database superuser has tampered with:
every tampering is detected, naming the first bad index where there is one."""

import ast
import base64
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.reporting import verifier
from services.reporting.domain import merkle
from services.reporting.domain.checkpoints import Signer, origin_of
from services.reporting.verifier import (
    Checkpoint,
    VerificationError,
    canonical_bytes,
    leaf_hash,
    main,
    verify_bundle,
)

PREFIX = "itsm.example/ledger"
SIGNER = Signer.generate(PREFIX)
KEYS = [verifier.VerifierKey.parse(SIGNER.verifier_key)]


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def events(n: int, tenant: str = "t1") -> list[bytes]:
    return [
        canonical_bytes(
            {"id": f"{tenant}-{i}", "type": "itsm.incident.created.v1", "tenantid": tenant},
            b'{"n":%d,"nul":"\\u0000"}' % i,
        )
        for i in range(n)
    ]


class Log:
    """A tenant's log as the ledger keeps it: entries, nodes, and checkpoints signed on demand."""

    def __init__(self, entries: list[bytes], tenant: str = "t1", signer: Signer = SIGNER) -> None:
        self.entries = entries
        self.origin = origin_of(PREFIX, tenant)
        self.signer = signer
        completed, _ = merkle.append([], 0, [leaf_hash(e) for e in entries])
        self.nodes = {(level, index): digest for level, index, digest in completed}

    def checkpoint(self, size: int) -> str:
        frontier = [self.nodes[ref] for ref in merkle.frontier_nodes(size)]
        return self.signer.sign(
            Checkpoint(self.origin, size, merkle.root_of_frontier(frontier, size))
        )

    def write(self, directory: Path, first: int = 0, previous: int | None = None) -> Path:
        """Write an export bundle as docs/ledger.md describes it."""
        size = len(self.entries)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "checkpoint").write_text(self.checkpoint(size))
        (directory / "keys").write_text(self.signer.verifier_key + "\n")
        with (directory / "entries.jsonl").open("w") as f:
            for i in range(first, size):
                f.write(json.dumps({"index": i, "entry": b64(self.entries[i])}) + "\n")
        with (directory / "proofs.jsonl").open("w") as f:
            for i in range(first, size):
                proof = merkle.inclusion_proof(i, size, self.nodes)
                f.write(
                    json.dumps({"index": i, "tree_size": size, "proof": [b64(p) for p in proof]})
                )
                f.write("\n")
        if previous is not None:
            (directory / "previous-checkpoint").write_text(self.checkpoint(previous))
            proof = merkle.consistency_proof(previous, size, self.nodes)
            (directory / "consistency.json").write_text(
                json.dumps({"first": previous, "second": size, "proof": [b64(p) for p in proof]})
            )
        return directory


def read_lines(directory: Path) -> list[dict]:
    return [json.loads(line) for line in (directory / "entries.jsonl").read_text().splitlines()]


def write_lines(directory: Path, lines: list[dict]) -> None:
    (directory / "entries.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))


def first_bad(directory: Path, **kwargs) -> int | None:
    with pytest.raises(VerificationError) as caught:
        verify_bundle(str(directory), KEYS, **kwargs)
    return caught.value.index


# --- valid bundles ---------------------------------------------------------------------------


def test_a_whole_log_verifies_with_its_proofs_and_previous_checkpoint(tmp_path):
    bundle = Log(events(100)).write(tmp_path / "b", previous=37)
    summary = verify_bundle(str(bundle), KEYS)
    assert (summary.size, summary.first, summary.entries, summary.proofs) == (100, 0, 100, 100)
    assert summary.consistent_with == (37,)


def test_an_export_from_the_middle_verifies_by_inclusion_and_consistency(tmp_path):
    bundle = Log(events(100)).write(tmp_path / "b", first=60, previous=37)
    summary = verify_bundle(str(bundle), KEYS)
    assert (summary.first, summary.entries, summary.proofs) == (60, 40, 40)


def test_the_command_prints_one_line_and_exits_0(tmp_path, capsys):
    bundle = Log(events(10)).write(tmp_path / "b")
    assert main([str(bundle), "--key", SIGNER.verifier_key]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    assert out.startswith(f"OK {PREFIX}/t1: tree size 10")


# --- tampering as a superuser would ----------------------------------------------------------


def test_one_changed_byte_of_one_stored_event_names_its_index(tmp_path):
    bundle = Log(events(50)).write(tmp_path / "b")
    lines = read_lines(bundle)
    entry = bytearray(base64.b64decode(lines[23]["entry"]))
    entry[-3] ^= 0x01
    lines[23]["entry"] = b64(bytes(entry))
    write_lines(bundle, lines)
    assert first_bad(bundle) == 23


def test_a_deleted_row_names_its_index_whether_or_not_the_rest_is_renumbered(tmp_path):
    bundle = Log(events(50)).write(tmp_path / "b")
    lines = read_lines(bundle)
    del lines[17]
    write_lines(bundle, lines)
    assert first_bad(bundle) == 17
    for n, line in enumerate(lines):
        line["index"] = n
    write_lines(bundle, lines)
    assert first_bad(bundle) == 17


def test_two_reordered_rows_name_the_first(tmp_path):
    bundle = Log(events(50)).write(tmp_path / "b")
    lines = read_lines(bundle)
    lines[30]["entry"], lines[41]["entry"] = lines[41]["entry"], lines[30]["entry"]
    write_lines(bundle, lines)
    assert first_bad(bundle) == 30


def test_a_truncated_tail_names_where_it_ends(tmp_path):
    bundle = Log(events(50)).write(tmp_path / "b")
    write_lines(bundle, read_lines(bundle)[:44])
    assert first_bad(bundle) == 44


def test_a_row_moved_from_another_tenant_names_its_index(tmp_path):
    bundle = Log(events(50)).write(tmp_path / "b")
    lines = read_lines(bundle)
    lines.insert(12, {"index": 12, "entry": b64(events(1, tenant="t2")[0])})
    for n, line in enumerate(lines):
        line["index"] = n
    write_lines(bundle, lines)
    assert first_bad(bundle) == 12


def test_a_checkpoint_of_another_tenants_log_is_refused_by_origin(tmp_path, capsys):
    bundle = Log(events(5), tenant="t2").write(tmp_path / "b")
    with pytest.raises(VerificationError, match="t2"):
        verify_bundle(str(bundle), KEYS, origin=f"{PREFIX}/t1")
    args = [str(bundle), "--key", SIGNER.verifier_key, "--origin", f"{PREFIX}/t1"]
    assert main(args) == 1
    assert "FAILED" in capsys.readouterr().out


def test_an_earlier_checkpoint_of_another_tenant_is_refused(tmp_path):
    bundle = Log(events(20), tenant="t2").write(tmp_path / "b")
    earlier = Log(events(10), tenant="t1").checkpoint(10)
    with pytest.raises(VerificationError, match="earlier checkpoint is of the log"):
        verify_bundle(str(bundle), KEYS, earlier)


def test_a_rehashed_fake_signed_by_another_key_is_refused_by_signature(tmp_path, capsys):
    fake = events(50)
    fake[3] = canonical_bytes({"id": "forged"}, b"{}")
    intruder = Signer.generate(PREFIX)  # same name, another key
    bundle = Log(fake, signer=intruder).write(tmp_path / "b")
    with pytest.raises(VerificationError, match="no signature by a trusted key"):
        verify_bundle(str(bundle), KEYS)
    # The fake's own keys file vouches for it; the auditor's key does not.
    assert main([str(bundle)]) == 0
    capsys.readouterr()
    assert main([str(bundle), "--key", SIGNER.verifier_key]) == 1
    assert "no signature by a trusted key" in capsys.readouterr().out


def test_a_fake_signed_with_the_ledgers_own_key_is_caught_by_the_earlier_checkpoint(tmp_path):
    genuine = Log(events(50))
    kept = genuine.checkpoint(30)  # what the auditor kept from the last export
    fake = events(50)
    fake[3] = canonical_bytes({"id": "forged"}, b"{}")
    whole = Log(fake).write(tmp_path / "whole", previous=30)
    with pytest.raises(VerificationError, match="rewritten"):
        verify_bundle(str(whole), KEYS, kept)
    part = Log(fake).write(tmp_path / "part", first=40, previous=30)
    with pytest.raises(VerificationError, match="not the one checkpointed earlier"):
        verify_bundle(str(part), KEYS, kept)
    # Without the kept checkpoint the fake is self-consistent: that is what keeping one is for.
    verify_bundle(str(part), KEYS)


def test_the_command_names_the_first_bad_index_and_exits_1(tmp_path, capsys):
    bundle = Log(events(20)).write(tmp_path / "b")
    write_lines(bundle, read_lines(bundle)[:-1])
    assert main([str(bundle), "--key", SIGNER.verifier_key]) == 1
    assert "first bad index: 19" in capsys.readouterr().out


def test_a_middle_export_cut_short_names_where_it_ends(tmp_path):
    bundle = Log(events(30)).write(tmp_path / "b", first=10)
    write_lines(bundle, read_lines(bundle)[:15])
    assert first_bad(bundle) == 25


def test_an_entry_of_a_middle_export_without_its_proof_is_named(tmp_path):
    bundle = Log(events(30)).write(tmp_path / "b", first=10)
    proofs = (bundle / "proofs.jsonl").read_text().splitlines()
    (bundle / "proofs.jsonl").write_text("\n".join(proofs[:4] + proofs[5:]) + "\n")
    assert first_bad(bundle) == 14


def test_a_wrong_inclusion_proof_in_a_whole_export_is_named(tmp_path):
    bundle = Log(events(30)).write(tmp_path / "b")
    proofs = [json.loads(line) for line in (bundle / "proofs.jsonl").read_text().splitlines()]
    proofs[9]["proof"][0] = b64(bytes(32))
    (bundle / "proofs.jsonl").write_text("".join(json.dumps(p) + "\n" for p in proofs))
    assert first_bad(bundle) == 9


# --- random tampering ------------------------------------------------------------------------

SIZE = 40
GENUINE = Log(events(SIZE))
ORIGINAL = [b64(e) for e in GENUINE.entries]


def tamper(kind: str, a: int, b: int, renumber: bool) -> list[dict]:
    lines = [{"index": i, "entry": e} for i, e in enumerate(ORIGINAL)]
    if kind == "flip":
        raw = bytearray(base64.b64decode(lines[a]["entry"]))
        raw[b % len(raw)] ^= 1 << (b % 8)
        lines[a]["entry"] = b64(bytes(raw))
    elif kind == "delete":
        del lines[a]
    elif kind == "swap":
        lines[a], lines[b] = lines[b], lines[a]
    elif kind == "truncate":
        del lines[a:]
    elif kind == "insert":
        lines.insert(a, {"index": a, "entry": b64(b"forged %d" % b)})
    elif kind == "duplicate":
        lines.insert(a, dict(lines[b]))
    if renumber:
        for n, line in enumerate(lines):
            line["index"] = n
    return lines


def expected_first_bad(lines: list[dict], first: int) -> int:
    """The first position from `first` on whose entry is not the genuine one."""
    entries = [line["entry"] for line in lines]
    for n in range(first, min(len(entries), SIZE)):
        if entries[n] != ORIGINAL[n]:
            return n
    return min(len(entries), SIZE)


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from(["flip", "delete", "swap", "truncate", "insert", "duplicate"]),
    st.integers(0, SIZE - 1),
    st.integers(0, SIZE - 1),
    st.booleans(),
    st.booleans(),
)
def test_every_random_tampering_is_detected_at_its_first_bad_index(kind, a, b, renumber, whole):
    lines = tamper(kind, a, b, renumber)
    # A whole export, or one from the middle. In the middle, a row cut before the export's
    # first index without renumbering the rest only moves where the export starts (each entry
    # it holds is still proven): the range an export must cover is its manifest's to state.
    first = 0 if whole or not renumber else 8
    exported = lines[first:]
    genuine = [{"index": i, "entry": e} for i, e in enumerate(ORIGINAL)][first:]
    if exported == genuine:
        return  # nothing exported was changed (a swap of a row with itself, a change before 8)
    with tempfile.TemporaryDirectory() as scratch:
        bundle = GENUINE.write(Path(scratch) / "b", first=first)
        write_lines(bundle, exported)
        with pytest.raises(VerificationError) as caught:
            verify_bundle(str(bundle), KEYS)
    if exported:  # (an empty export does not say where it started)
        assert caught.value.index == expected_first_bad(lines, first)


# --- the verifier stands alone ---------------------------------------------------------------


def test_the_verifier_imports_only_the_standard_library_and_cryptography():
    tree = ast.parse(Path(verifier.__file__).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "a relative import"
            imported.add((node.module or "").split(".")[0])
    assert imported - set(sys.stdlib_module_names) == {"cryptography"}


def test_a_copy_of_the_one_file_runs_as_a_script(tmp_path):
    bundle = Log(events(12)).write(tmp_path / "b", previous=5)
    script = shutil.copy(verifier.__file__, tmp_path / "verifier.py")
    earlier = tmp_path / "kept-checkpoint"
    earlier.write_text(GENUINE_12.checkpoint(5))
    result = subprocess.run(
        [
            sys.executable,
            script,
            str(bundle),
            "--key",
            SIGNER.verifier_key,
            "--earlier",
            str(earlier),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "consistent with the earlier checkpoint(s) of size 5, 5" in result.stdout


GENUINE_12 = Log(events(12))


def test_big_bundles_report_progress_on_stderr(tmp_path, capsys):
    bundle = Log(events(60_000)).write(tmp_path / "b")
    assert main([str(bundle), "--key", SIGNER.verifier_key]) == 0
    err = capsys.readouterr().err
    assert "hashing entries: 60,000 of 60,000" in err


def test_any_json_of_the_same_content_verifies_not_only_the_writers_form(tmp_path):
    log = Log(events(33))
    bundle = log.write(tmp_path / "b")
    for name in ("entries.jsonl", "proofs.jsonl"):
        items = [json.loads(line) for line in (bundle / name).read_text().splitlines()]
        compact = [
            json.dumps(dict(reversed(item.items())), separators=(",", ":")) for item in items
        ]
        (bundle / name).write_text("\r\n".join(compact) + "\r\n\n")
    assert verify_bundle(str(bundle), KEYS).proofs == 33
    proofs = (bundle / "proofs.jsonl").read_text().replace(b64(log.nodes[(0, 1)]), b64(bytes(32)))
    (bundle / "proofs.jsonl").write_text(proofs)
    assert first_bad(bundle) == 0


def test_the_writers_lines_are_json_of_the_bundle_format():
    proof = [bytes(range(32)), bytes(32)]
    assert json.loads(verifier.proof_line(5, 9, proof)) == {
        "index": 5,
        "tree_size": 9,
        "proof": [b64(p) for p in proof],
    }
    assert json.loads(verifier.proof_line(0, 1, [])) == {"index": 0, "tree_size": 1, "proof": []}
    assert json.loads(verifier.entry_line(3, b"\x00\xff")) == {
        "index": 3,
        "entry": b64(b"\x00\xff"),
    }


@pytest.mark.parametrize(
    ("name", "content", "said"),
    [
        ("checkpoint", b"\xff\xfe not text", "not UTF-8"),
        ("entries.jsonl", b'{"index": 0, "entry": "@@"}\n', "'entry' is not base64"),
        ("entries.jsonl", b"not json\n", "not JSON"),
        ("entries.jsonl", b'{"index": -1, "entry": ""}\n', "'index'"),
        ("proofs.jsonl", b'{"index": 0, "tree_size": 3, "proof": "x"}\n', "first bad index: 0"),
    ],
)
def test_a_malformed_bundle_fails_with_a_reason_not_a_traceback(
    tmp_path, capsys, name, content, said
):
    bundle = Log(events(3)).write(tmp_path / "b")
    (bundle / name).write_bytes(content)
    assert main([str(bundle), "--key", SIGNER.verifier_key]) == 1
    out = capsys.readouterr().out
    assert out.startswith("FAILED: ")
    assert said in out


def test_a_missing_bundle_fails_and_a_bad_key_is_a_usage_error(tmp_path, capsys):
    assert main([str(tmp_path / "nowhere"), "--key", SIGNER.verifier_key]) == 1
    assert "cannot read the checkpoint" in capsys.readouterr().out
    assert main([str(tmp_path), "--key", "not-a-key"]) == 2
    assert "malformed verifier key" in capsys.readouterr().err


def test_a_wrong_consistency_proof_is_caught_even_in_a_whole_export(tmp_path):
    bundle = Log(events(40)).write(tmp_path / "b", previous=13)
    consistency = json.loads((bundle / "consistency.json").read_text())
    consistency["proof"][0] = b64(bytes(32))
    (bundle / "consistency.json").write_text(json.dumps(consistency))
    with pytest.raises(VerificationError, match=r"not the one checkpointed earlier|not a prefix"):
        verify_bundle(str(bundle), KEYS)


def test_an_earlier_checkpoint_the_export_cannot_prove_is_reported_not_passed(tmp_path):
    log = Log(events(40))
    bundle = log.write(tmp_path / "b", first=30, previous=13)
    with pytest.raises(VerificationError, match=r"proves 13 -> 40, not 20 -> 40"):
        verify_bundle(str(bundle), KEYS, log.checkpoint(20))
    # A whole export proves any earlier checkpoint from its entries.
    whole = log.write(tmp_path / "w", previous=13)
    assert verify_bundle(str(whole), KEYS, log.checkpoint(20)).consistent_with == (13, 20)


def test_a_log_that_shrank_since_the_earlier_checkpoint_is_refused(tmp_path):
    bundle = Log(events(10)).write(tmp_path / "b")
    with pytest.raises(VerificationError, match="shrank"):
        verify_bundle(str(bundle), KEYS, Log(events(12)).checkpoint(12))


@pytest.mark.parametrize("size", [1, 2, 3, 5, 8, 13, 31, 32, 33, 64, 65, 100])
def test_the_proof_lines_the_verifier_expects_are_the_logs_proofs(size):
    # The fast path accepts a proof line by comparing it with these bytes, so they must be
    # exactly the log's proofs, in any order of asking.
    log = Log(events(size))
    tree = verifier._Tree(b"".join(leaf_hash(e) for e in log.entries))
    expected = verifier._ProofLines(tree, size)
    order = [*range(size), *reversed(range(size)), *range(0, size, 3)]
    for index in order:
        proof = merkle.inclusion_proof(index, size, log.nodes)
        assert expected.line(index) == verifier.proof_line(index, size, proof)
