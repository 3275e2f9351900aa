"""Checkpoints as C2SP signed notes: byte-exact against the vectors of golang.org/x/mod/sumdb/note
(note_test.go) and the C2SP tlog-checkpoint example, and the ledger's signer."""

import base64

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.reporting.domain.checkpoints import Signer, load_signer, origin_of
from services.reporting.verifier import (
    Checkpoint,
    VerificationError,
    VerifierKey,
    open_note,
    parse_checkpoint,
    verifier_key_string,
)

# golang.org/x/mod/sumdb/note, note_test.go (TestNewVerifier, TestSign, TestOpen).
PETER_KEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
PETER_PRIVATE = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
ENOCH_KEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
PETER_SIG = (
    "\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdng"
    "otpRZb6KE6RyyBwJnAM=\n"
)
ENOCH_SIG = (
    "\u2014 EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnW"
    "Lox33WWd1RvMc+QQ=\n"
)

# C2SP tlog-checkpoint, the example checkpoint.
C2SP_CHECKPOINT = (
    "example.com/behind-the-sofa\n"
    "20852163\n"
    "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
    "\n"
    "\u2014 example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/"
    "Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n"
)


def test_a_verifier_key_of_the_go_implementation_parses_and_prints_back():
    key = VerifierKey.parse(PETER_KEY)
    assert key.name == "PeterNeumann"
    assert key.key_hash.hex() == "c74f20a3"
    assert str(key) == PETER_KEY
    assert verifier_key_string(key.name, key.public_key) == PETER_KEY


def test_mangled_verifier_keys_are_refused():
    # As TestNewVerifier does: every byte bumped, every proper substring, a wrong length, a
    # wrong algorithm (each with a matching key hash).
    raw = PETER_KEY.encode()
    mangled = [bytes(raw[:i]) + bytes([raw[i] + 1]) + raw[i + 1 :] for i in range(len(raw))]
    mangled += [raw[i:j] for i in range(len(raw)) for j in range(i + 1, len(raw) + 1)]
    mangled.remove(raw)
    mangled += [
        b"PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==",
        b"PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
    ]
    for text in mangled:
        with pytest.raises(ValueError):
            VerifierKey.parse(text.decode("latin-1"))


def test_signing_gives_the_go_implementations_note_byte_for_byte():
    signer = load_signer(PETER_PRIVATE)
    assert signer.verifier_key == PETER_KEY
    assert signer.key_id == "c74f20a3"
    assert signer.sign_note(TEXT) == TEXT + "\n" + PETER_SIG


def test_a_note_opens_with_a_known_key_and_ignores_unknown_ones():
    peter = VerifierKey.parse(PETER_KEY)
    enoch = VerifierKey.parse(ENOCH_KEY)
    note = TEXT + "\n" + PETER_SIG + ENOCH_SIG
    assert open_note(note, [peter]) == TEXT
    assert open_note(note, [enoch]) == TEXT
    assert open_note(note, [peter, enoch]) == TEXT


def test_a_note_with_no_known_signer_is_refused():
    with pytest.raises(VerificationError, match="no signature by a trusted key"):
        open_note(TEXT + "\n" + ENOCH_SIG, [VerifierKey.parse(PETER_KEY)])
    with pytest.raises(VerificationError):
        open_note(TEXT + "\n" + PETER_SIG, [])


def test_a_known_keys_bad_signature_is_refused_even_beside_a_good_one():
    bad = PETER_SIG[:60] + "ABCD" + PETER_SIG[60:]
    for note in (TEXT + "\n" + bad, TEXT + "\n" + ENOCH_SIG + bad):
        with pytest.raises(VerificationError, match="invalid signature for key PeterNeumann"):
            open_note(note, [VerifierKey.parse(PETER_KEY), VerifierKey.parse(ENOCH_KEY)])


@pytest.mark.parametrize(
    "note",
    [
        TEXT,
        TEXT + "\n",
        TEXT + "\n" + PETER_SIG[:-1],
        "\x01" + TEXT + "\n" + PETER_SIG,
        TEXT + "\n" + "\u2014 Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2"
        "pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=",
        TEXT + "\n" + PETER_SIG + "Unexpected line.\n",
        TEXT + "\n" + PETER_SIG * 101,
    ],
)
def test_malformed_notes_of_the_go_tests_are_refused(note):
    with pytest.raises(VerificationError, match="malformed"):
        open_note(note, [VerifierKey.parse(PETER_KEY)])


def test_the_c2sp_example_checkpoint_parses_and_its_body_is_byte_exact():
    body = C2SP_CHECKPOINT.split("\n\n")[0] + "\n"
    checkpoint = parse_checkpoint(body)
    assert checkpoint.origin == "example.com/behind-the-sofa"
    assert checkpoint.size == 20852163
    assert checkpoint.root == base64.b64decode("CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=")
    assert checkpoint.extensions == ()
    assert checkpoint.body() == body
    # Its signature is by a key we do not hold: the note is well formed, and unverified.
    with pytest.raises(VerificationError, match="no signature by a trusted key"):
        open_note(C2SP_CHECKPOINT, [VerifierKey.parse(PETER_KEY)])


def test_extension_lines_follow_the_root_and_are_signed():
    checkpoint = Checkpoint("o", 3, bytes(32), ("time 1700000000", "x y"))
    assert (
        checkpoint.body() == f"o\n3\n{base64.b64encode(bytes(32)).decode()}\ntime 1700000000\nx y\n"
    )
    assert parse_checkpoint(checkpoint.body()) == checkpoint


@pytest.mark.parametrize(
    "body",
    [
        "o\n3\n",
        "o\n03\n" + base64.b64encode(bytes(32)).decode() + "\n",
        "o\n-3\n" + base64.b64encode(bytes(32)).decode() + "\n",
        "o\n3\n" + base64.b64encode(bytes(31)).decode() + "\n",
        "\n3\n" + base64.b64encode(bytes(32)).decode() + "\n",
        "o\n3\n" + base64.b64encode(bytes(32)).decode(),
    ],
)
def test_malformed_checkpoint_bodies_are_refused(body):
    with pytest.raises(VerificationError, match="malformed checkpoint"):
        parse_checkpoint(body)


def test_the_ledgers_signer_signs_checkpoints_its_verifier_key_verifies():
    signer = Signer.generate("itsm.example/ledger")
    checkpoint = Checkpoint(origin_of("itsm.example/ledger", "t1"), 42, bytes(range(32)))
    note = signer.sign(checkpoint)
    assert note.startswith(checkpoint.body() + "\n\u2014 itsm.example/ledger ")
    assert VerifierKey.parse(signer.verifier_key).verify(note) == checkpoint
    assert signer.key_id == VerifierKey.parse(signer.verifier_key).key_hash.hex()


def test_another_key_of_the_same_name_does_not_verify():
    checkpoint = Checkpoint("itsm.example/ledger/t1", 1, bytes(32))
    note = Signer.generate("itsm.example/ledger").sign(checkpoint)
    other = VerifierKey.parse(Signer.generate("itsm.example/ledger").verifier_key)
    with pytest.raises(VerificationError):
        other.verify(note)


def test_a_changed_size_or_root_breaks_the_signature():
    signer = Signer.generate()
    note = signer.sign(Checkpoint("l/t", 10, bytes(32)))
    key = VerifierKey.parse(signer.verifier_key)
    for forged in (note.replace("\n10\n", "\n11\n"), note.replace("AAAA", "AAAB", 1)):
        with pytest.raises(VerificationError, match="invalid signature"):
            key.verify(forged)


def test_a_checkpoint_whose_origin_spans_lines_is_not_signed():
    with pytest.raises(ValueError):
        Signer.generate().sign(Checkpoint("a\nb", 1, bytes(32)))


def test_the_signing_key_loads_from_pem_text_or_a_file(tmp_path):
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    path = tmp_path / "ledger.pem"
    path.write_text(pem)
    from_text = load_signer(pem, name="itsm.example/ledger")
    from_file = load_signer(str(path), name="itsm.example/ledger")
    assert from_text.verifier_key == from_file.verifier_key
    assert from_text.name == "itsm.example/ledger"


def test_a_key_that_is_not_ed25519_or_not_a_key_is_refused(tmp_path):
    with pytest.raises(ValueError):
        load_signer(str(tmp_path / "missing.pem"))
    with pytest.raises(ValueError):
        load_signer(PETER_PRIVATE.replace("c74f20a3", "c74f20a4"))


def test_parsing_a_signed_note_reads_its_body_without_trusting_it():
    # Parsing is for display; only VerifierKey.verify says a checkpoint is the ledger's.
    assert parse_checkpoint(C2SP_CHECKPOINT).size == 20852163
