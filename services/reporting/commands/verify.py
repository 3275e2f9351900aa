"""`verify`: check the stored ledger against its signed checkpoints (or an export bundle).

`python -m services.reporting verify [--tenant T] [--key KEY ...] [--earlier CHECKPOINT_FILE]`
reads each tenant's log from the database, recomputes every entry's canonical bytes from the
stored message and its leaf, the root at every checkpoint size and at the head, checks every
checkpoint's signature and the stored consistency proof between successive checkpoints, and, with
`--earlier`, that the log still has the root of a checkpoint the auditor kept. On failure it
names the tenant and the FIRST bad index and exits 1. `verify --bundle DIR` runs the
stand-alone verifier (`services/reporting/verifier.py`) on an export instead.

Which keys are trusted: those given (`--key`, `--keys`), else the ledger's configured signing
key; a key the log itself introduced (`LedgerKeyAddedV1`) below a checkpoint a trusted key
signed is trusted too, so a log signed by a sequence of rotated keys verifies with the newest.
The `ledger_keys` table is never trusted: whoever can rewrite the ledger can rewrite it.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import asyncpg

from services.reporting.adapters import checkpoints as store
from services.reporting.adapters import ledger, log
from services.reporting.adapters.checkpoints import KEY_ADDED_TYPE, StoredCheckpoint
from services.reporting.commands import command_pool
from services.reporting.domain import merkle
from services.reporting.domain.checkpoints import load_signer
from services.reporting.settings import ReportingSettings
from services.reporting.verifier import (
    Checkpoint,
    VerificationError,
    VerifierKey,
    fold,
    leaf_hash,
    node_hash,
    open_note,
    parse_checkpoint,
    read_keys,
    root_of,
    roots_at,
    verify_consistency,
)
from services.reporting.verifier import main as verify_bundle
from shared.db import Connection, all_tenants_transaction, tenant_transaction
from shared.progress import ProgressBar

# Entries read per query: bounded round trips, a few MB at a time.
CHUNK = 10_000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The command's options."""
    parser.add_argument("--tenant", help="verify this tenant's log only (default: every tenant)")
    parser.add_argument("--key", action="append", default=[], help="a trusted verifier key")
    parser.add_argument("--keys", help="a file of trusted verifier keys, one a line")
    parser.add_argument("--earlier", help="a signed checkpoint kept earlier (signed note file)")
    parser.add_argument("--bundle", help="verify an export bundle directory instead")


@dataclass
class TenantReport:
    """What verifying one tenant's log established."""

    tenant_id: str
    size: int = 0
    checkpoints: int = 0
    signed_size: int = 0
    keys: list[str] = field(default_factory=list)


class LogVerificationError(VerificationError):
    """A tenant's log does not verify; `index` is its first bad index when one is known."""

    def __init__(self, tenant_id: str, message: str, index: int | None = None) -> None:
        super().__init__(message, index)
        self.tenant_id = tenant_id


async def run(args: argparse.Namespace, settings: ReportingSettings) -> int:
    """Verify; 0 when every log verifies, 1 naming the first failure."""
    if args.bundle:
        bundle_args = [args.bundle, *[f"--key={k}" for k in args.key]]
        if args.keys:
            bundle_args.append(f"--keys={args.keys}")
        if args.earlier:
            bundle_args.append(f"--earlier={args.earlier}")
        return verify_bundle(bundle_args)
    try:
        keys = trusted_keys(settings, args.key, args.keys)
        earlier = _read_text(args.earlier) if args.earlier else None
    except (OSError, ValueError) as exc:
        print(f"verify: {exc}", file=sys.stderr)
        return 2
    pool = await command_pool(settings, "verify")
    try:
        tenants = [args.tenant] if args.tenant else await all_tenants(pool)
        for tenant_id in tenants:
            try:
                report = await verify_tenant(pool, tenant_id, keys, earlier, sys.stderr)
            except LogVerificationError as exc:
                print(f"FAILED: tenant {exc.tenant_id}: {exc.message}")
                if exc.index is not None:
                    print(f"first bad index: {exc.index}")
                return 1
            print(
                f"OK: tenant {tenant_id}: {report.size} entries, {report.checkpoints}"
                f" checkpoints verified (newest signed size {report.signed_size})"
            )
    finally:
        await pool.close()
    return 0


def _read_text(path: str) -> str:
    return Path(path).read_text(encoding="utf-8")


def trusted_keys(
    settings: ReportingSettings, given: Sequence[str], keys_file: str | None
) -> list[VerifierKey]:
    """The keys given, else the ledger's configured signing key."""
    keys = [VerifierKey.parse(key) for key in given]
    if keys_file:
        with open(keys_file, encoding="utf-8") as f:
            keys += read_keys(f.read())
    if not keys and settings.ledger_signing_key_file:
        signer = load_signer(settings.ledger_signing_key_file, settings.ledger_key_label)
        keys = [VerifierKey.parse(signer.verifier_key)]
    if not keys:
        raise ValueError("no trusted key: give --key/--keys or REPORTING_LEDGER_SIGNING_KEY_FILE")
    return keys


async def all_tenants(pool: asyncpg.Pool) -> list[str]:
    """Every tenant with a log."""
    async with all_tenants_transaction(pool) as conn:
        return [tenant for tenant, _ in sorted(await store.sizes(conn))]


async def verify_tenant(
    pool: asyncpg.Pool,
    tenant_id: str,
    keys: Sequence[VerifierKey],
    earlier: str | None = None,
    progress: TextIO | None = None,
) -> TenantReport:
    """Verify one tenant's whole log; raises LogVerificationError naming the first bad index."""
    async with tenant_transaction(pool, tenant_id, readonly=True) as conn:
        return await _Verification(conn, tenant_id, keys, progress).run(earlier)


class _Verification:
    def __init__(
        self,
        conn: Connection,
        tenant_id: str,
        keys: Sequence[VerifierKey],
        progress: TextIO | None,
    ) -> None:
        self.conn = conn
        self.tenant_id = tenant_id
        self.keys = list(keys)
        self.progress = progress
        self.leaves: list[bytes] = []
        self.roots: dict[int, bytes] = {}

    def fail(self, message: str, index: int | None = None) -> LogVerificationError:
        return LogVerificationError(self.tenant_id, message, index)

    async def run(self, earlier_note: str | None) -> TenantReport:
        conn, tenant_id = self.conn, self.tenant_id
        head = await log.read_head(conn, tenant_id)
        stored = await store.all_of(conn, tenant_id)
        last_index = await conn.fetchval(
            "SELECT max(leaf_index) FROM ledger WHERE tenant_id = $1", tenant_id
        )
        outside = await conn.fetchval(
            "SELECT min(position) FROM ledger WHERE tenant_id = $1 AND leaf_index IS NULL",
            tenant_id,
        )
        size = max(
            head.size if head is not None else 0,
            stored[-1].tree_size if stored else 0,
            (last_index + 1) if last_index is not None else 0,
        )
        earlier = None
        if earlier_note is not None:
            earlier = self._checked(earlier_note, "the earlier checkpoint")
            if earlier.size > size:
                raise self.fail(
                    f"the log has {size} entries, fewer than the earlier checkpoint's"
                    f" {earlier.size}",
                    size,
                )
        # Every entry, in index order: its bytes recomputed from the stored message.
        key_entries: list[tuple[int, str]] = []
        bar = ProgressBar(size, self.progress, unit="entries")
        index = 0
        while index < size:
            rows = await log.entries(conn, tenant_id, index, min(index + CHUNK, size))
            for row in rows:
                self._check_row(row, index)
                if row["type"] == KEY_ADDED_TYPE:
                    key_entries.append((index, _key_of(row)))
                index += 1
            if not rows or len(self.leaves) != index:
                raise self.fail("an entry of the log is missing", len(self.leaves))
            bar.update(index)
        bar.update(index, final=True)
        if outside is not None and (head is None or head.adopted):
            raise self.fail(f"the row at position {outside} is not in the log", size)

        # The roots every check below needs, in one pass over the leaves (not one a checkpoint).
        wanted = {item.tree_size for item in stored} | {size}
        self.roots = roots_at(self.leaves, wanted | ({earlier.size} if earlier else set()))
        checkpoints = self._signed(stored, key_entries)
        for checkpoint in checkpoints:
            await self._check_root(checkpoint.size, checkpoint.root, "its signed checkpoint")
        for first, second in itertools.pairwise(checkpoints):
            proof = await log.consistency_proof(conn, tenant_id, first.size, second.size)
            try:
                verify_consistency(first.size, second.size, proof, first.root, second.root)
            except VerificationError as exc:
                raise self.fail(
                    f"the stored tree is not consistent between the checkpoints of sizes"
                    f" {first.size} and {second.size}: {exc.message}",
                    first.size,
                ) from None
        if earlier is not None:
            await self._check_root(earlier.size, earlier.root, "the earlier checkpoint")
        if head is not None and head.size != size:
            raise self.fail(f"the head says {head.size} entries, the log has {size}", head.size)
        if head is not None and size and head.root != self._root(size):
            raise self.fail("the head's frontier is not the log's", await self._locate(size))
        return TenantReport(
            tenant_id,
            size,
            len(checkpoints),
            checkpoints[-1].size if checkpoints else 0,
            [str(k) for k in self.keys],
        )

    def _check_row(self, row: Any, index: int) -> None:
        if row["leaf_index"] != index:
            raise self.fail("an entry of the log is missing", index)
        if row["tenant_id"] != self.tenant_id:
            raise self.fail("an entry belongs to another tenant", index)
        try:
            entry = ledger.canonical_of_row(row)
        except ValueError as exc:
            raise self.fail(f"an entry's message cannot be read: {exc}", index) from None
        tenant = _attribute(entry, "tenantid")
        if tenant is not None and tenant != self.tenant_id:
            raise self.fail(f"an entry is an event of tenant {tenant!r}", index)
        leaf = leaf_hash(entry)
        if leaf != row["leaf_hash"]:
            raise self.fail("an entry does not hash to its stored leaf", index)
        self.leaves.append(leaf)

    def _checked(self, note: str, what: str) -> Checkpoint:
        try:
            checkpoint = parse_checkpoint(open_note(note, self.keys))
        except VerificationError as exc:
            raise self.fail(f"{what}: {exc.message}") from None
        if not checkpoint.origin.endswith(f"/{self.tenant_id}"):
            raise self.fail(f"{what} is of another log ({checkpoint.origin})")
        return checkpoint

    def _signed(
        self, stored: Sequence[StoredCheckpoint], key_entries: Sequence[tuple[int, str]]
    ) -> list[Checkpoint]:
        """Every stored checkpoint, signature checked. A key the log introduced below a
        checkpoint a trusted key signed is trusted too."""
        trusted_upto = 0
        for item in reversed(stored):
            try:
                open_note(item.note, self.keys)
            except VerificationError:
                continue
            trusted_upto = item.tree_size
            break
        for index, key in key_entries:
            if index < trusted_upto and key not in {str(k) for k in self.keys}:
                self.keys.append(VerifierKey.parse(key))
        checkpoints = []
        for item in stored:
            checkpoint = self._checked(item.note, f"the checkpoint of size {item.tree_size}")
            if (checkpoint.size, checkpoint.root) != (item.tree_size, item.root_hash):
                raise self.fail(f"the checkpoint of size {item.tree_size} is not its note")
            checkpoints.append(checkpoint)
        return checkpoints

    def _root(self, size: int) -> bytes:
        found = self.roots.get(size)
        return root_of(self.leaves[:size]) if found is None else found

    async def _check_root(self, size: int, root: bytes, what: str) -> None:
        if self._root(size) != root:
            raise self.fail(
                f"the entries below {size} do not give the root of {what}",
                await self._locate(size, root),
            )

    async def _locate(self, size: int, root: bytes | None = None) -> int:
        """The first index whose recomputed leaf differs from the stored tree, found by
        descending the stored complete subtrees (when they still give the signed root);
        otherwise 0, the start of the range the signature vouches for."""
        refs = merkle.frontier_nodes(size)
        stored = await log.nodes(self.conn, self.tenant_id, refs)
        if any(ref not in stored for ref in refs):
            return 0
        if root is not None and fold([stored[ref] for ref in refs]) != root:
            return 0
        for level, index in refs:
            lo, hi = index << level, (index + 1) << level
            if root_of(self.leaves[lo:hi]) != stored[(level, index)]:
                return await self._descend(level, index, stored[(level, index)])
        return 0

    async def _descend(self, level: int, index: int, expected: bytes) -> int:
        while level > 0:
            left, right = (level - 1, 2 * index), (level - 1, 2 * index + 1)
            found = await log.nodes(self.conn, self.tenant_id, [left, right])
            if left not in found or right not in found:
                return index << level
            if node_hash(found[left], found[right]) != expected:
                return index << level  # the stored tree itself was altered here
            lo = left[1] << left[0]
            if root_of(self.leaves[lo : lo + (1 << left[0])]) != found[left]:
                level, index, expected = left[0], left[1], found[left]
            else:
                level, index, expected = right[0], right[1], found[right]
        return index


def _attribute(entry: bytes, name: str) -> str | None:
    value = json.loads(entry).get(name)
    return value if isinstance(value, str) else None


def _key_of(row: Any) -> str:
    data = json.loads(row["message_value"]) if row["message_value"] else row["data"]
    return str(data.get("verifier_key", ""))
