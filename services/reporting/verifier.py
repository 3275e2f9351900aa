"""Stand-alone verifier of an ITSM ledger export, and the one definition of the log's hashing.

An auditor copies this one file and runs, offline:

    python verifier.py BUNDLE_DIR --keys keys            # or --key NAME+HASH+KEY
    python verifier.py BUNDLE_DIR --keys keys --earlier checkpoint-I-kept-last-time

It depends on the Python standard library and `cryptography` only, and imports nothing from
the project, so what it checks does not rest on the code being audited. The ledger service
imports the same functions: there is one definition of the canonical bytes and the tree.

- An event's entry is its canonical bytes: RFC 8785 (JCS) JSON of the CloudEvent in structured
  form, every attribute a string member, the Kafka record value byte for byte as `data_base64`.
- The log is an RFC 9162 Merkle tree: leaf = SHA-256(0x00 || entry), node = SHA-256(0x01 ||
  left || right); inclusion and consistency proofs per RFC 9162 §2.1.3.2 and §2.1.4.2.
- A checkpoint is a C2SP tlog-checkpoint body in a C2SP signed note, signed with Ed25519.

Exit status: 0 when everything verifies (one summary line on stdout), 1 when anything fails
(the first bad index, when there is one, on stdout), 2 for a usage error.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import json
import os
import re
import sys
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TextIO

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

__all__ = [
    "Checkpoint",
    "Summary",
    "VerificationError",
    "VerifierKey",
    "canonical_bytes",
    "canonical_json",
    "canonical_of_record",
    "complete_subtrees",
    "consistency_ranges",
    "entry_line",
    "fold",
    "inclusion_ranges",
    "leaf_hash",
    "main",
    "node_hash",
    "open_note",
    "parse_checkpoint",
    "proof_line",
    "read_keys",
    "root_of",
    "signature_line",
    "verifier_key_string",
    "verify_bundle",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()
DATA_MEMBER = "data_base64"


class VerificationError(Exception):
    """Something does not verify; `index` is the first bad leaf index when there is one."""

    def __init__(self, message: str, index: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.index = index

    def __str__(self) -> str:
        if self.index is None:
            return self.message
        return f"{self.message} (first bad index {self.index})"


# --- canonical bytes -------------------------------------------------------------------------

# ECMAScript JSON.stringify's escapes (RFC 8785 §3.2.2.2): the two-character ones, then \u00xx
# (lowercase hex) for the other controls. Lone surrogates are escaped as \udxxx, as
# well-formed JSON.stringify (ES2019) does, so any Python string has canonical bytes.
_ESCAPES = {
    **{chr(c): f"\\u{c:04x}" for c in range(0x20)},
    "\b": "\\b",
    "\t": "\\t",
    "\n": "\\n",
    "\f": "\\f",
    "\r": "\\r",
    '"': '\\"',
    "\\": "\\\\",
}
_ESCAPES.update({chr(c): f"\\u{c:04x}" for c in range(0xD800, 0xE000)})
_ESCAPE_TABLE = str.maketrans(_ESCAPES)


def _json_string(text: str) -> str:
    return '"' + text.translate(_ESCAPE_TABLE) + '"'


def _utf16_order(name: str) -> bytes:
    # RFC 8785 §3.2.3 sorts member names by their UTF-16 code units, not by code points.
    return name.encode("utf-16-be", "surrogatepass")


def canonical_bytes(attributes: Mapping[str, str], value: bytes) -> bytes:
    """The entry of an event: UTF-8 of the JCS form of the structured CloudEvent, every
    attribute a string member and the record value as `data_base64`.

    Raises ValueError only when an attribute is itself named `data_base64`, which no
    CloudEvents attribute can be (names are lowercase letters and digits)."""
    if DATA_MEMBER in attributes:
        raise ValueError(f"{DATA_MEMBER!r} is not a CloudEvents attribute name")
    members = dict(attributes)
    members[DATA_MEMBER] = base64.b64encode(value).decode("ascii")
    return canonical_json(members)


# The standard library's JSON string encoder (C when available), ensure_ascii off: for a string
# without lone surrogates it writes exactly JSON.stringify's escapes (`"`, `\\`, \b \f \n \r
# \t, \u00xx in lower case for the other controls, nothing else); a lone surrogate it leaves
# as is, which strict UTF-8 then refuses. The fast path of `canonical_json`.
_encode_string = json.encoder.encode_basestring


def canonical_json(members: Mapping[str, str]) -> bytes:
    """UTF-8 of the RFC 8785 (JCS) serialization of a JSON object whose members are strings."""
    if all(name.isascii() for name in members):
        names = sorted(members)  # ASCII: code points and UTF-16 code units sort alike
    else:
        names = sorted(members, key=_utf16_order)
    encode = _encode_string
    try:
        return ("{" + ",".join([encode(n) + ":" + encode(members[n]) for n in names]) + "}").encode(
            "utf-8"
        )
    except UnicodeEncodeError:  # a lone surrogate somewhere: escaped as JSON.stringify does
        pass
    body = ",".join(f"{_json_string(name)}:{_json_string(members[name])}" for name in names)
    return ("{" + body + "}").encode("utf-8")  # every lone surrogate is escaped by now


def _header_text(raw: bytes) -> str:
    # The binding's headers are UTF-8; bytes that are not decode to lone surrogates
    # (surrogateescape), which stay distinct from any valid text, so nothing fails or collides.
    return raw.decode("utf-8", "surrogateescape")


def canonical_of_record(headers: Sequence[tuple[str, bytes | None]], value: bytes) -> bytes:
    """The entry of a Kafka record: its `ce_*` headers (prefix removed) and `content-type` (as
    `datacontenttype`) as attributes, the value as data.

    Other headers are not the event's and are left out. A repeated header counts once, its last
    value, as the binding's decoder reads it; a null header value carries no attribute (the
    binding refuses such a record); a `ce_data_base64` header is not a CloudEvents attribute
    and is left out. So every record has canonical bytes."""
    attributes: dict[str, str] = {}
    for name, raw in headers:
        if raw is None:
            continue
        if name[:3] == "ce_":
            if name != _DATA_HEADER:
                attributes[name[3:]] = raw.decode("utf-8", "surrogateescape")  # _header_text
        elif name == "content-type":
            attributes["datacontenttype"] = raw.decode("utf-8", "surrogateescape")
    return canonical_bytes(attributes, value)


_DATA_HEADER = "ce_" + DATA_MEMBER


# --- the tree (RFC 9162 §2.1) ----------------------------------------------------------------

_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"


def leaf_hash(entry: bytes) -> bytes:
    """SHA-256(0x00 || entry)."""
    return hashlib.sha256(_LEAF_PREFIX + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right)."""
    return hashlib.sha256(_NODE_PREFIX + left + right).digest()


class _Frontier:
    """The right edge of a growing tree: one complete-subtree root per set bit of its size."""

    __slots__ = ("hashes", "size")

    def __init__(self) -> None:
        self.hashes: list[bytes] = []
        self.size = 0

    def push(self, leaf: bytes) -> None:
        hashes = self.hashes
        hashes.append(leaf)
        size = self.size
        while size & 1:  # each trailing one bit of the old size is a subtree now completed
            right = hashes.pop()
            hashes[-1] = node_hash(hashes[-1], right)
            size >>= 1
        self.size += 1

    def root(self) -> bytes:
        return fold(self.hashes)


def root_of(leaf_hashes: Iterable[bytes]) -> bytes:
    """MTH of the leaves (RFC 9162 §2.1.1); the empty tree's root is SHA-256 of nothing."""
    frontier = _Frontier()
    for leaf in leaf_hashes:
        frontier.push(leaf)
    return frontier.root()


def roots_at(leaf_hashes: Iterable[bytes], sizes: Iterable[int]) -> dict[int, bytes]:
    """MTH of the first n leaves for every n of `sizes` that the leaves reach, in one pass."""
    wanted = set(sizes)
    roots = {0: EMPTY_ROOT} if 0 in wanted else {}
    frontier = _Frontier()
    for leaf in leaf_hashes:
        frontier.push(leaf)
        if frontier.size in wanted:
            roots[frontier.size] = frontier.root()
    return roots


def _split_point(n: int) -> int:
    # The largest power of two smaller than n (n > 1): where MTH splits a tree of n leaves.
    return 1 << ((n - 1).bit_length() - 1)


def complete_subtrees(lo: int, hi: int) -> list[tuple[int, int]]:
    """The complete subtrees, as (level, index), whose leaves make up [lo, hi), largest first.

    For the ranges a proof or a frontier uses (lo a multiple of the first part's width), their
    hashes folded right to left (`fold`) give MTH(D[lo:hi])."""
    parts: list[tuple[int, int]] = []
    while lo < hi:
        level = (hi - lo).bit_length() - 1
        while lo & ((1 << level) - 1):
            level -= 1
        parts.append((level, lo >> level))
        lo += 1 << level
    return parts


def fold(hashes: Sequence[bytes]) -> bytes:
    """MTH of a tree from the hashes of its complete subtrees, largest (leftmost) first."""
    if not hashes:
        return EMPTY_ROOT
    root = hashes[-1]
    for left in reversed(hashes[:-1]):
        root = node_hash(left, root)
    return root


def inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """The leaf ranges [lo, hi) whose MTHs are PATH(index, D[size]) (RFC 9162 §2.1.3.1), in
    proof order (nearest the leaf first)."""
    if not 0 <= index < size:
        raise ValueError(f"index {index} is outside a tree of size {size}")
    ranges: list[tuple[int, int]] = []
    lo, hi = 0, size
    while hi - lo > 1:
        k = _split_point(hi - lo)
        if index < lo + k:
            ranges.append((lo + k, hi))
            hi = lo + k
        else:
            ranges.append((lo, lo + k))
            lo += k
    ranges.reverse()
    return ranges


def consistency_ranges(size1: int, size2: int) -> list[tuple[int, int]]:
    """The leaf ranges whose MTHs are PROOF(size1, D[size2]) (RFC 9162 §2.1.4.1), in proof
    order; empty when size1 is 0 or size2."""
    if not 0 <= size1 <= size2:
        raise ValueError(f"a tree of size {size1} cannot be a prefix of size {size2}")
    ranges: list[tuple[int, int]] = []
    if size1 in (0, size2):
        return ranges
    lo, hi, whole = 0, size2, True
    while True:
        if size1 - lo == hi - lo:  # SUBPROOF(m, D[m], b)
            if not whole:
                ranges.append((lo, hi))
            break
        k = _split_point(hi - lo)
        if size1 - lo <= k:
            ranges.append((lo + k, hi))
            hi = lo + k
        else:
            ranges.append((lo, lo + k))
            lo += k
            whole = False
    ranges.reverse()
    return ranges


def _check_hash(value: bytes, what: str, index: int | None = None) -> None:
    if len(value) != HASH_SIZE:
        raise VerificationError(f"{what} is {len(value)} bytes, not {HASH_SIZE}", index)


def verify_inclusion(
    leaf_hash: bytes, index: int, tree_size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Check an inclusion proof (RFC 9162 §2.1.3.2); raise VerificationError naming `index`."""
    if not 0 <= index < tree_size:
        raise VerificationError(f"index {index} is outside a tree of size {tree_size}", index)
    _check_hash(leaf_hash, "the leaf hash", index)
    fn, sn, r = index, tree_size - 1, leaf_hash
    for p in proof:
        _check_hash(p, "a proof element", index)
        if sn == 0:
            raise VerificationError("the inclusion proof is too long", index)
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise VerificationError("the inclusion proof is too short", index)
    if r != root:
        raise VerificationError(
            f"entry {index} is not in the tree of size {tree_size} with that root", index
        )


def verify_consistency(
    size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes
) -> None:
    """Check that the tree (size1, root1) is a prefix of (size2, root2) (RFC 9162 §2.1.4.2)."""
    if not 0 <= size1 <= size2:
        raise VerificationError(f"a tree of size {size1} cannot be a prefix of size {size2}")
    if size1 == size2 or size1 == 0:
        # PROOF(m, D[m]) is empty; the empty tree is a prefix of every tree.
        if proof:
            raise VerificationError("the consistency proof should be empty")
        if size1 == size2 and root1 != root2:
            raise VerificationError(f"two different roots for the tree size {size1}")
        if size1 == 0 and root1 != EMPTY_ROOT:
            raise VerificationError("the root of the empty tree is wrong")
        return
    if not proof:
        raise VerificationError("the consistency proof is empty")
    for p in proof:
        _check_hash(p, "a proof element")
    path = list(proof)
    if size1 & (size1 - 1) == 0:
        path.insert(0, root1)
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise VerificationError("the consistency proof is too long")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise VerificationError("the consistency proof is too short")
    if fr != root1:
        raise VerificationError(f"the tree of size {size1} is not the one checkpointed earlier")
    if sr != root2:
        raise VerificationError(f"the tree of size {size1} is not a prefix of size {size2}")


# --- signed notes and checkpoints (C2SP signed-note, tlog-checkpoint) ------------------------

_ALG_ED25519 = 0x01
_SIGNATURE_PREFIX = "\u2014 "  # an em dash and a space
_MAX_SIGNATURES = 100


def signature_line(name: str, key_hash: bytes, signature: bytes) -> str:
    """A signed note's signature line: em dash, key name, base64(key hash || signature)."""
    return f"{_SIGNATURE_PREFIX}{name} {base64.b64encode(key_hash + signature).decode('ascii')}\n"


def _key_hash(name: str, key: bytes) -> bytes:
    # key is the algorithm byte followed by the public key (signed-note §"Signatures").
    return hashlib.sha256(name.encode("utf-8") + b"\n" + key).digest()[:4]


def _valid_key_name(name: str) -> bool:
    return bool(name) and not any(c.isspace() or c == "+" for c in name)


def _b64decode(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)


def verifier_key_string(name: str, public_key_bytes: bytes) -> str:
    """The verifier key `name+hash+base64(0x01 || public key)` of an Ed25519 public key."""
    if not _valid_key_name(name):
        raise ValueError(f"key name {name!r} is empty or has a space or '+'")
    if len(public_key_bytes) != 32:
        raise ValueError("an Ed25519 public key is 32 bytes")
    key = bytes([_ALG_ED25519]) + public_key_bytes
    return f"{name}+{_key_hash(name, key).hex()}+{base64.b64encode(key).decode('ascii')}"


@dataclass(frozen=True)
class Checkpoint:
    """A log's signed claim: its origin, size and root, plus optional extension lines."""

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def body(self) -> str:
        """The checkpoint's note text (what is signed)."""
        lines = [self.origin, str(self.size), base64.b64encode(self.root).decode("ascii")]
        return "".join(line + "\n" for line in (*lines, *self.extensions))


def _note_text_is_valid(text: str) -> bool:
    return text.endswith("\n") and not any(c < " " and c != "\n" for c in text)


def parse_checkpoint(text: str) -> Checkpoint:
    """Parse a checkpoint body, or the body of a signed note WITHOUT checking its signatures
    (`VerifierKey.verify` checks them); raise VerificationError."""
    text = text[: text.find("\n\n") + 1] if "\n\n" in text else text  # a body has no blank line
    if not _note_text_is_valid(text):
        raise VerificationError("malformed checkpoint: not newline-terminated text")
    lines = text[:-1].split("\n")
    if len(lines) < 3 or any(not line for line in lines):
        raise VerificationError("malformed checkpoint: needs origin, size and root lines")
    origin, size_text, root_text, *extensions = lines
    if not size_text.isascii() or not size_text.isdigit() or size_text != str(int(size_text)):
        raise VerificationError(f"malformed checkpoint: size {size_text!r}")
    try:
        root = _b64decode(root_text)
    except (binascii.Error, UnicodeEncodeError):
        raise VerificationError("malformed checkpoint: the root is not base64") from None
    if len(root) != HASH_SIZE or base64.b64encode(root).decode("ascii") != root_text:
        raise VerificationError("malformed checkpoint: the root is not a SHA-256 hash")
    return Checkpoint(origin, int(size_text), root, tuple(extensions))


@dataclass(frozen=True)
class _NoteSignature:
    name: str
    key_hash: bytes
    signature: bytes


def _split_note(note_text: str) -> tuple[str, list[_NoteSignature]]:
    if len(note_text) > 1_000_000 or not note_text.endswith("\n"):
        raise VerificationError("malformed note")
    split = note_text.rfind("\n\n")
    if split < 0:
        raise VerificationError("malformed note: no signature block")
    text, block = note_text[: split + 1], note_text[split + 2 :]
    if not _note_text_is_valid(text) or any(c < " " and c != "\n" for c in block):
        raise VerificationError("malformed note")
    signatures: list[_NoteSignature] = []
    for line in block[:-1].split("\n"):
        if not line.startswith(_SIGNATURE_PREFIX):
            raise VerificationError("malformed note: a line after the text is not a signature")
        name, _, encoded = line[len(_SIGNATURE_PREFIX) :].partition(" ")
        try:
            raw = _b64decode(encoded)
        except (binascii.Error, UnicodeEncodeError):
            raise VerificationError("malformed note: a signature is not base64") from None
        if not _valid_key_name(name) or len(raw) < 5:
            raise VerificationError("malformed note: a bad signature line")
        signatures.append(_NoteSignature(name, raw[:4], raw[4:]))
    if len(signatures) > _MAX_SIGNATURES:
        raise VerificationError("malformed note: too many signatures")
    return text, signatures


@dataclass(frozen=True)
class VerifierKey:
    """An Ed25519 verifier key in the signed-note format `name+hash+base64(0x01 || key)`."""

    name: str
    key_hash: bytes
    public_key: bytes

    @classmethod
    def parse(cls, text: str) -> VerifierKey:
        """Read a verifier key string; raise ValueError when it is malformed or inconsistent."""
        parts = text.strip().split("+", 2)  # base64 may hold '+' too
        if len(parts) != 3 or not _valid_key_name(parts[0]):
            raise ValueError(f"malformed verifier key {text!r}")
        name, hash_text, encoded = parts
        try:
            key = _b64decode(encoded)
            key_hash = bytes.fromhex(hash_text)
        except (binascii.Error, UnicodeEncodeError, ValueError):
            raise ValueError(f"malformed verifier key {text!r}") from None
        if len(hash_text) != 8 or hash_text != hash_text.lower() or len(key) != 33:
            raise ValueError(f"malformed verifier key {text!r}")
        if key[0] != _ALG_ED25519:
            raise ValueError(f"verifier key {name!r} is not an Ed25519 key")
        if _key_hash(name, key) != key_hash:
            raise ValueError(f"verifier key {name!r}: the hash does not match the key")
        return cls(name, key_hash, key[1:])

    def __str__(self) -> str:
        return verifier_key_string(self.name, self.public_key)

    def verify(self, note_text: str) -> Checkpoint:
        """The checkpoint of a signed note this key has signed; raise VerificationError."""
        return parse_checkpoint(open_note(note_text, [self]))


def open_note(note_text: str, keys: Sequence[VerifierKey]) -> str:
    """The text of a signed note once a known key's signature verifies (signatures by unknown
    keys are ignored, a known key's bad signature fails); raise VerificationError."""
    text, signatures = _split_note(note_text)
    known = {(k.name, k.key_hash): k for k in keys}
    verified = 0
    for sig in signatures:
        key = known.get((sig.name, sig.key_hash))
        if key is None:
            continue
        try:
            public = Ed25519PublicKey.from_public_bytes(key.public_key)
            public.verify(sig.signature, text.encode("utf-8"))
        except (InvalidSignature, ValueError):
            raise VerificationError(
                f"invalid signature for key {key.name}+{key.key_hash.hex()}"
            ) from None
        verified += 1
    if not verified:
        raise VerificationError("the checkpoint has no signature by a trusted key")
    return text


def read_keys(text: str) -> list[VerifierKey]:
    """Verifier keys, one a line; blank lines and lines starting with '#' are skipped."""
    lines = (line.strip() for line in text.splitlines())
    return [VerifierKey.parse(line) for line in lines if line and not line.startswith("#")]


# --- the export bundle (docs/ledger.md) ------------------------------------------------------

_PAIR = 2 * HASH_SIZE


@dataclass(frozen=True)
class Summary:
    """What a successful verification established."""

    origin: str
    size: int
    root: bytes
    first: int
    entries: int
    proofs: int
    consistent_with: tuple[int, ...]

    def line(self) -> str:
        """One line for the auditor."""
        text = (
            f"OK {self.origin}: tree size {self.size},"
            f" root {base64.b64encode(self.root).decode('ascii')};"
            f" entries {self.first}..{self.first + self.entries - 1} verified"
            f" ({self.entries}), {self.proofs} inclusion proofs checked"
        )
        if self.consistent_with:
            sizes = ", ".join(str(size) for size in self.consistent_with)
            text += f"; consistent with the earlier checkpoint(s) of size {sizes}"
        return text


def entry_line(index: int, entry: bytes) -> bytes:
    """A line of entries.jsonl, without its newline, as exports write it."""
    return b'{"index": %d, "entry": "%s"}' % (index, binascii.b2a_base64(entry, newline=False))


def proof_line(index: int, tree_size: int, proof: Sequence[bytes]) -> bytes:
    """A line of proofs.jsonl, without its newline, as exports write it (the verifier reads
    any JSON of the same content, this form fastest)."""
    encode = binascii.b2a_base64
    elements = b'", "'.join(encode(h, newline=False) for h in proof)
    quoted = b'"' + elements + b'"' if proof else b""
    return b'{"index": %d, "tree_size": %d, "proof": [%s]}' % (index, tree_size, quoted)


class _Progress:
    """Counts on stderr for big bundles, at most four times a second."""

    def __init__(self, stream: TextIO | None, what: str, total: int) -> None:
        self.stream = stream if total >= 50_000 else None
        self.what = what
        self.total = total
        self.shown = 0.0

    def __call__(self, done: int) -> None:
        if self.stream is None:
            return
        now = time.monotonic()
        if done >= self.total or now - self.shown >= 0.25:
            self.shown = now
            end = "\n" if done >= self.total else ""
            self.stream.write(f"\r{self.what}: {done:,} of {self.total:,}{end}")
            self.stream.flush()


def _read_text(path: str) -> str:
    try:
        with open(path, encoding="utf-8", newline="") as f:
            return f.read()
    except UnicodeDecodeError:
        raise VerificationError(f"{os.path.basename(path)}: not UTF-8 text") from None


class _Where:
    """A line of a bundle file, named only when something is wrong with it."""

    __slots__ = ("name", "number")

    def __init__(self, name: str, number: int) -> None:
        self.name = name
        self.number = number

    def __str__(self) -> str:
        return f"{self.name} line {self.number}"


def _json_lines(path: str) -> Iterator[tuple[_Where, dict[str, object]]]:
    name = os.path.basename(path)
    with open(path, "rb") as f:
        for number, line in enumerate(f, 1):
            if line.strip():
                where = _Where(name, number)
                yield where, _json_object(line.decode("utf-8", "replace"), where)


def _json_object(text: str, where: object) -> dict[str, object]:
    try:
        item = json.loads(text)
    except ValueError:
        raise VerificationError(f"{where}: not JSON") from None
    if not isinstance(item, dict):
        raise VerificationError(f"{where}: not a JSON object")
    return item


def _count(item: Mapping[str, object], name: str, where: object) -> int:
    value = item.get(name)
    if type(value) is not int or value < 0:
        raise VerificationError(f"{where}: {name!r} is not a non-negative integer")
    return value


def _base64_field(value: object, where: object, name: str) -> bytes:
    if type(value) is not str:
        raise VerificationError(f"{where}: {name!r} is not a base64 string")
    try:
        return _b64decode(value)
    except (binascii.Error, UnicodeEncodeError):
        raise VerificationError(f"{where}: {name!r} is not base64") from None


def _strings(item: Mapping[str, object], name: str, where: object) -> list[str]:
    value = item.get(name)
    if not isinstance(value, list) or not all(type(element) is str for element in value):
        raise VerificationError(f"{where}: {name!r} is not a list of strings")
    return value


def _hashes(item: Mapping[str, object], name: str, where: object) -> list[bytes]:
    return _decoded(_strings(item, name, where), where)


def _decoded(strings: Sequence[str], where: object) -> list[bytes]:
    return [_base64_field(element, where, "proof") for element in strings]


class _Tree:
    """Every complete subtree hash over the exported leaves, one flat buffer per level."""

    def __init__(self, leaves: bytes) -> None:
        self.size = len(leaves) // HASH_SIZE
        self.levels = [leaves]
        below = leaves
        sha256 = hashlib.sha256
        while len(below) >= _PAIR:
            above = b"".join(
                sha256(_NODE_PREFIX + below[offset : offset + _PAIR]).digest()
                for offset in range(0, len(below) - _PAIR + 1, _PAIR)
            )
            self.levels.append(above)
            below = above
        self._folded: dict[tuple[int, int], bytes] = {}

    def leaf(self, index: int) -> bytes:
        return self.levels[0][index * HASH_SIZE : (index + 1) * HASH_SIZE]

    def range_hash(self, lo: int, hi: int) -> bytes:
        """MTH of the leaves [lo, hi) (an aligned range as proofs use)."""
        folded = self._folded.get((lo, hi))
        if folded is not None:  # an incomplete right edge: few of them, each asked for often
            return folded
        parts = complete_subtrees(lo, hi)
        if len(parts) == 1:
            level, index = parts[0]
            return self.levels[level][index * HASH_SIZE : (index + 1) * HASH_SIZE]
        folded = fold([self.range_hash(*_bounds(part)) for part in parts])
        self._folded[(lo, hi)] = folded
        return folded

    def path(self, index: int, size: int) -> list[bytes]:
        """PATH(index, D[size]) bottom-up: siblings below the level where index and the last
        leaf part (the last of them possibly an incomplete right edge), then the complete
        left subtrees above it, one per set bit."""
        levels = self.levels
        inner = (index ^ (size - 1)).bit_length()
        path = []
        for level in range(inner):
            sibling = (index >> level) ^ 1
            lo = sibling << level
            if lo + (1 << level) <= size:
                path.append(levels[level][sibling * HASH_SIZE : (sibling + 1) * HASH_SIZE])
            else:
                path.append(self.range_hash(lo, size))
        node, level = index >> inner, inner
        while node:
            if node & 1:
                path.append(levels[level][(node - 1) * HASH_SIZE : node * HASH_SIZE])
            node >>= 1
            level += 1
        return path

    def agrees_before(self, index: int, size: int, proof: Sequence[bytes]) -> bool:
        """Whether the proof's subtrees left of `index` are ours: then, the proof verifying,
        the leaves [0, index] are the signed tree's."""
        ranges = inclusion_ranges(index, size)
        if len(proof) != len(ranges):
            return False
        return all(
            proof[n] == self.range_hash(lo, hi) for n, (lo, hi) in enumerate(ranges) if hi <= index
        )


def _bounds(node: tuple[int, int]) -> tuple[int, int]:
    level, index = node
    return index << level, (index + 1) << level


class _Proofs:
    """proofs.jsonl, read line by line, and by index when a failure has to be located."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.present = os.path.exists(path)
        self._offsets: dict[int, int] | None = None

    def lines(self) -> Iterator[tuple[_Where, bytes]]:
        """Each non-blank line, without its line end."""
        if not self.present:
            return
        name = os.path.basename(self.path)
        with open(self.path, "rb") as f:
            for number, line in enumerate(f, 1):
                if line.strip():
                    yield _Where(name, number), line.rstrip(b"\r\n")

    def __iter__(self) -> Iterator[tuple[_Where, int, int, list[str]]]:
        """Each proof as written: its line, index, tree size and base64 elements."""
        if not self.present:
            return
        for where, item in _json_lines(self.path):
            yield (
                where,
                _count(item, "index", where),
                _count(item, "tree_size", where),
                _strings(item, "proof", where),
            )

    def get(self, index: int) -> tuple[int, list[bytes]] | None:
        if not self.present:
            return None
        if self._offsets is None:
            self._offsets = {}
            with open(self.path, "rb") as f:
                offset = 0
                for line in f:
                    if line.strip():
                        where = f"proofs.jsonl at byte {offset}"
                        item = _json_object(line.decode("utf-8", "replace"), where)
                        self._offsets.setdefault(_count(item, "index", where), offset)
                    offset += len(line)
        start = self._offsets.get(index)
        if start is None:
            return None
        with open(self.path, "rb") as f:
            f.seek(start)
            where = f"proofs.jsonl at byte {start}"
            item = _json_object(f.readline().decode("utf-8", "replace"), where)
        return _count(item, "tree_size", where), _hashes(item, "proof", where)


def _signed_checkpoint(note: str, keys: Sequence[VerifierKey], what: str) -> Checkpoint:
    try:
        return parse_checkpoint(open_note(note, keys))
    except VerificationError as exc:
        raise VerificationError(f"{what}: {exc.message}") from None


# An entries.jsonl line as `entry_line` writes it; other JSON of the same content is parsed.
_ENTRY_LINE = re.compile(rb'\{"index": (0|[1-9][0-9]{0,17}), "entry": "([A-Za-z0-9+/]*={0,2})"\}')


def _read_entries(
    path: str, size: int, progress: TextIO | None
) -> tuple[int, bytes, VerificationError | None]:
    """The first index, the concatenated leaf hashes of entries.jsonl in file order, and where
    the index column first breaks (a row deleted, moved or repeated without renumbering)."""
    leaves = bytearray()
    first = 0
    count = 0
    broken: VerificationError | None = None
    report = _Progress(progress, "hashing entries", size)
    name = os.path.basename(path)
    fast = _ENTRY_LINE.fullmatch
    sha256 = hashlib.sha256
    try:
        with open(path, "rb") as f:
            for number, line in enumerate(f, 1):
                line = line.rstrip(b"\r\n")
                written = fast(line)
                if written is not None:
                    index = int(written[1])
                    try:
                        entry = binascii.a2b_base64(written[2], strict_mode=True)
                    except binascii.Error:
                        bad = f"{name} line {number}: 'entry' is not base64"
                        raise VerificationError(bad) from None
                elif not line.strip():
                    continue
                else:
                    where = _Where(name, number)
                    item = _json_object(line.decode("utf-8", "replace"), where)
                    index = _count(item, "index", where)
                    entry = _base64_field(item.get("entry"), where, "entry")
                if count == 0:
                    first = index
                elif index != first + count and broken is None:
                    broken = VerificationError(
                        f"{name} line {number}: entry {index} where entry {first + count}"
                        " belongs (the entries are not contiguous)",
                        first + count,
                    )
                leaves += sha256(_LEAF_PREFIX + entry).digest()  # leaf_hash, inlined
                count += 1
                report(count)
    except OSError as exc:
        raise VerificationError(f"cannot read the entries: {exc}") from None
    report(size)
    return first, bytes(leaves), broken


def _locate(tree: _Tree, proofs: _Proofs, checkpoint: Checkpoint) -> int | None:
    # The first index where the exported leaves and the signed tree part: "leaves [0, j] are the
    # signed tree's" holds up to some j and fails from there on, and leaf j's inclusion proof
    # decides it (its left subtrees are ours and it verifies against the signed root), so a
    # binary search finds the first j where it fails.
    def agrees(j: int) -> bool:
        found = proofs.get(j)
        if found is None or found[0] != checkpoint.size:
            return False
        try:
            verify_inclusion(tree.leaf(j), j, checkpoint.size, found[1], checkpoint.root)
        except VerificationError:
            return False
        return tree.agrees_before(j, checkpoint.size, found[1])

    lo, hi = 0, tree.size
    while lo < hi:
        middle = (lo + hi) // 2
        if agrees(middle):
            lo = middle + 1
        else:
            hi = middle
    return lo if lo < tree.size else None


class _ProofLines:
    """`proof_line` of every index in turn from the tree, built incrementally: the proof of
    leaf i has one element per level L, a function of i >> L, so moving to i + 1 recomputes
    only the levels where i and i + 1 differ."""

    def __init__(self, tree: _Tree, size: int) -> None:
        self.tree = tree
        self.size = size
        self.quoted: list[bytes] = [b""] * max(size.bit_length(), 1)
        self.last = -1

    def _element(self, level: int, index: int) -> bytes:
        sibling = (index >> level) ^ 1
        lo = sibling << level
        if lo >= self.size:
            return b""  # no subtree on that side at that level
        if lo + (1 << level) <= self.size:
            digest = self.tree.levels[level][sibling * HASH_SIZE : (sibling + 1) * HASH_SIZE]
        else:
            digest = self.tree.range_hash(lo, self.size)
        return b'"' + binascii.b2a_base64(digest, newline=False) + b'"'

    def line(self, index: int) -> bytes:
        quoted = self.quoted
        follows = self.last >= 0 and index == self.last + 1
        changed = (index ^ self.last).bit_length() if follows else len(quoted)
        for level in range(min(changed, len(quoted))):
            quoted[level] = self._element(level, index)
        self.last = index
        elements = b", ".join([q for q in quoted if q])
        return b'{"index": %d, "tree_size": %d, "proof": [%s]}' % (index, self.size, elements)


def _check_full(
    tree: _Tree, proofs: _Proofs, checkpoint: Checkpoint, progress: TextIO | None
) -> int:
    size = checkpoint.size
    if tree.size != size or tree.range_hash(0, size) != checkpoint.root:
        bad = _locate(tree, proofs, checkpoint)
        if tree.size < size:
            raise VerificationError(
                f"the entries end at {tree.size}; the checkpoint's tree size is {size}",
                tree.size if bad is None else bad,
            )
        if tree.size > size:
            raise VerificationError(
                f"{tree.size - size} entries beyond the checkpoint's tree size {size}",
                size if bad is None else bad,
            )
        raise VerificationError("the entries' root differs from the signed checkpoint's", bad)
    # The root is the signed one, so the leaves are; the proofs must be exactly the tree's.
    checked = 0
    first_bad: int | None = None
    report = _Progress(progress, "checking inclusion proofs", size)
    expected = _ProofLines(tree, size)
    for where, raw in proofs.lines():
        # Most lines are as `proof_line` writes them, in index order: compared as bytes with
        # the tree's own, they need no parsing.
        if checked < size and raw == expected.line(checked):
            checked += 1
            report(checked)
            continue
        item = _json_object(raw.decode("utf-8", "replace"), where)
        index = _count(item, "index", where)
        tree_size = _count(item, "tree_size", where)
        try:
            right = (
                tree_size == size
                and index < size
                and _decoded(_strings(item, "proof", where), where) == tree.path(index, size)
            )
        except VerificationError:
            right = False
        if not right:
            first_bad = index if first_bad is None else min(first_bad, index)
        checked += 1
        report(checked)
    if first_bad is not None:
        raise VerificationError("an inclusion proof in the export is wrong", first_bad)
    return checked


def _check_range(
    first: int, tree: _Tree, proofs: _Proofs, checkpoint: Checkpoint, progress: TextIO | None
) -> int:
    # An export from the middle of the log: every entry stands by its own inclusion proof.
    proven = bytearray(tree.size)
    first_bad: int | None = None
    checked = 0
    report = _Progress(progress, "checking inclusion proofs", tree.size)
    for where, index, tree_size, proof in proofs:
        position = index - first
        try:
            if not 0 <= position < tree.size:
                raise VerificationError(f"{where}: a proof for entry {index}, not exported")
            if tree_size != checkpoint.size:
                raise VerificationError(f"{where}: a proof for tree size {tree_size}")
            hashes = _decoded(proof, where)
            verify_inclusion(tree.leaf(position), index, tree_size, hashes, checkpoint.root)
            proven[position] = 1
        except VerificationError:
            first_bad = index if first_bad is None else min(first_bad, index)
        checked += 1
        report(checked)
    unproven = proven.find(0)
    if unproven >= 0:
        first_bad = first + unproven if first_bad is None else min(first_bad, first + unproven)
    end = first + tree.size
    if end < checkpoint.size:  # the export runs to the checkpoint: its tail was cut
        first_bad = end if first_bad is None else min(first_bad, end)
    if first_bad is not None:
        raise VerificationError(
            f"entries start at {first}, so each needs a valid inclusion proof", first_bad
        )
    return checked


def _check_earlier(
    directory: str,
    checkpoint: Checkpoint,
    earlier: Checkpoint,
    tree: _Tree | None,
    *,
    must_prove: bool,
) -> None:
    """Check that `checkpoint` extends `earlier`: for a whole export (`tree`) by recomputing
    the earlier tree from the entries, and with consistency.json when it covers these sizes
    (it must when `must_prove` or when there is no whole tree)."""
    if earlier.origin != checkpoint.origin:
        raise VerificationError(
            f"the earlier checkpoint is of the log {earlier.origin!r}, not {checkpoint.origin!r}"
        )
    if earlier.size > checkpoint.size:
        raise VerificationError(
            f"the log shrank from {earlier.size} entries to {checkpoint.size}", checkpoint.size
        )
    if tree is not None and tree.range_hash(0, earlier.size) != earlier.root:
        raise VerificationError(
            f"the log's first {earlier.size} entries are not those checkpointed earlier:"
            " the log was rewritten"
        )
    if earlier.size in (0, checkpoint.size):  # the proof is empty; the roots must agree
        verify_consistency(earlier.size, checkpoint.size, [], earlier.root, checkpoint.root)
        return
    path = os.path.join(directory, "consistency.json")
    if not os.path.exists(path):
        if tree is None or must_prove:
            raise VerificationError("no consistency.json to prove the earlier checkpoint a prefix")
        return
    item = _json_object(_read_text(path), "consistency.json")
    sizes = (_count(item, "first", "consistency.json"), _count(item, "second", "consistency.json"))
    if sizes != (earlier.size, checkpoint.size):
        if tree is None or must_prove:
            raise VerificationError(
                f"consistency.json proves {sizes[0]} -> {sizes[1]},"
                f" not {earlier.size} -> {checkpoint.size}"
            )
        return
    proof = _hashes(item, "proof", "consistency.json")
    verify_consistency(earlier.size, checkpoint.size, proof, earlier.root, checkpoint.root)


def _before(index: int | None, other: int | None) -> bool:
    return index is not None and (other is None or index < other)


def verify_bundle(
    directory: str,
    keys: Sequence[VerifierKey] | None = None,
    earlier: str | None = None,
    *,
    origin: str | None = None,
    progress: TextIO | None = None,
) -> Summary:
    """Verify an export directory: the checkpoint's signature, the entries against its root
    (recomputed, or by inclusion proofs for an export from the middle), every inclusion proof,
    and consistency with the bundle's previous checkpoint and `earlier` (a checkpoint note the
    auditor kept). Raise VerificationError naming the first bad index where there is one."""

    def path(name: str) -> str:
        return os.path.join(directory, name)

    if keys is None:
        try:
            keys = read_keys(_read_text(path("keys")))
        except OSError:
            raise VerificationError("no trusted keys: give --key or --keys") from None
        except ValueError as exc:
            raise VerificationError(f"keys: {exc}") from None
    try:
        note = _read_text(path("checkpoint"))
    except OSError as exc:
        raise VerificationError(f"cannot read the checkpoint: {exc}") from None
    checkpoint = _signed_checkpoint(note, keys, "checkpoint")
    if origin is not None and checkpoint.origin != origin:
        raise VerificationError(
            f"the checkpoint is of the log {checkpoint.origin!r}, not {origin!r}"
        )
    first, leaves, broken = _read_entries(path("entries.jsonl"), checkpoint.size, progress)
    tree = _Tree(leaves)
    proofs = _Proofs(path("proofs.jsonl"))
    # Entries are checked in file order, their position giving their index; a break in the
    # index column is itself a bad index, reported unless the check finds an earlier one.
    try:
        if first == 0:
            checked = _check_full(tree, proofs, checkpoint, progress)
        else:
            checked = _check_range(first, tree, proofs, checkpoint, progress)
    except VerificationError as exc:
        if broken is not None and _before(broken.index, exc.index):
            raise broken from None
        raise
    if broken is not None:
        raise broken
    whole = tree if first == 0 else None
    earlier_checkpoints = []
    if os.path.exists(path("previous-checkpoint")):
        note = _read_text(path("previous-checkpoint"))
        previous = _signed_checkpoint(note, keys, "previous-checkpoint")
        _check_earlier(directory, checkpoint, previous, whole, must_prove=True)
        earlier_checkpoints.append(previous)
    if earlier is not None:
        kept = _signed_checkpoint(earlier, keys, "the earlier checkpoint")
        _check_earlier(directory, checkpoint, kept, whole, must_prove=False)
        earlier_checkpoints.append(kept)
    return Summary(
        checkpoint.origin,
        checkpoint.size,
        checkpoint.root,
        first,
        tree.size,
        checked,
        tuple(kept.size for kept in earlier_checkpoints),
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the verifier as a command; return the exit status (0 verified, 1 failed, 2 usage)."""
    parser = argparse.ArgumentParser(
        prog="verifier.py", description="Verify an ITSM ledger export offline."
    )
    parser.add_argument("bundle", help="the export directory")
    trusted = parser.add_mutually_exclusive_group()
    trusted.add_argument("--key", action="append", help="a trusted verifier key (repeatable)")
    trusted.add_argument("--keys", help="a file of trusted verifier keys, one a line")
    parser.add_argument("--earlier", help="a checkpoint kept from an earlier export")
    parser.add_argument("--origin", help="the log the checkpoint must be of")
    args = parser.parse_args(argv)
    try:
        keys: list[VerifierKey] | None = None
        if args.key:
            keys = [VerifierKey.parse(key) for key in args.key]
        elif args.keys:
            keys = read_keys(_read_text(args.keys))
        earlier = _read_text(args.earlier) if args.earlier else None
    except (OSError, ValueError) as exc:
        print(f"verifier.py: {exc}", file=sys.stderr)
        return 2
    try:
        summary = verify_bundle(args.bundle, keys, earlier, origin=args.origin, progress=sys.stderr)
    except (VerificationError, OSError) as exc:
        print(f"FAILED: {exc.message if isinstance(exc, VerificationError) else exc}")
        if isinstance(exc, VerificationError) and exc.index is not None:
            print(f"first bad index: {exc.index}")
        return 1
    print(summary.line())
    return 0


if __name__ == "__main__":
    sys.exit(main())
