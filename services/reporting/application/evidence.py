"""Evidence exports and auditor samples (ISO/IEC 20000-1 evidence, docs/ledger.md's bundle).

An export is a job: `request_export` queues it, and the runner (a background task of every
replica, or the `export` command) claims it with a lease, plans it once (which entries, which
checkpoint, which previous export), builds the archive and stores it, writing
`EvidenceExportedV1` to the outbox in the same transaction, so each export is itself an entry
of the tenant's log. A replica that dies mid-job leaves a lapsed lease; another takes the job
and builds it again from the stored plan, which gives the same archive content.

The plan: the period's events are those whose time is in [from, to); entries.jsonl holds the
log from the period's first entry up to the size of the smallest signed checkpoint that holds
the period's last one (signed on demand if none does yet), because a bundle runs to its
checkpoint (docs/ledger.md), with an inclusion proof for every entry. A period with no events
exports the checkpoint's last entry alone, so the bundle still proves the checkpoint. The
previous export is the tenant's newest finished export whose checkpoint is no larger; its
checkpoint and the consistency proof to this one travel in the bundle.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import itertools
import json
import logging
import tarfile
import tempfile
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import asyncpg

from services.reporting import verifier
from services.reporting.adapters import checkpoints as store
from services.reporting.adapters import evidence as jobs
from services.reporting.adapters import log
from services.reporting.adapters.evidence import ExportJob
from services.reporting.domain import clauses, merkle
from shared.db import all_tenants_transaction, tenant_transaction
from shared.errors import NotFound, invalid_field
from shared.events.reporting import EvidenceExportedV1
from shared.outbox import writer

logger = logging.getLogger(__name__)

# Entries read, hashed and proven per transaction; the job's progress moves by this much.
# Chunks end at multiples of it, so that every chunk but the first and the last at the tree's
# right edge is a complete subtree whose proofs come from its leaves (`merkle.block_proofs`).
CHUNK = 2048
LEASE_SECONDS = 60.0
MAX_ATTEMPTS = 5
MAX_PERIOD_DAYS = 3660
VERIFIER_SOURCE = Path(verifier.__file__)


def chunks(first: int, size: int) -> list[tuple[int, int]]:
    """[first, size) cut at the multiples of CHUNK: [start, end) each."""
    bounds = [first, *range((first // CHUNK + 1) * CHUNK, size, CHUNK), size]
    return [(lo, hi) for lo, hi in itertools.pairwise(bounds) if lo < hi]


class CheckpointSigner(Protocol):
    """What an export needs of the checkpointer: a checkpoint of the tenant's log now."""

    async def checkpoint(
        self, tenant_id: str, *, trigger: str, on_demand: bool = False
    ) -> tuple[Any, bool]: ...


def export_subject(job_id: uuid.UUID) -> str:
    """The aggregate (CloudEvents subject) of an export's event."""
    return f"evidence-export/{job_id}"


def wanted_clauses(given: Sequence[str] | None) -> list[str]:
    """The clauses asked for, checked, in the catalogue's order (all when none are named)."""
    if not given:
        return list(clauses.CLAUSE_IDS)
    unknown = [c for c in given if c not in clauses.CLAUSE_IDS]
    if unknown:
        raise invalid_field(
            "clauses",
            f"unknown clause {unknown[0]!r}; one of {', '.join(clauses.CLAUSE_IDS)}",
        )
    return [c for c in clauses.CLAUSE_IDS if c in given]


async def request_export(
    pool: asyncpg.Pool,
    tenant_id: str,
    period_from: datetime,
    period_to: datetime,
    wanted: Sequence[str] | None,
    requested_by: str,
) -> ExportJob:
    """Queue an export of the tenant's evidence for a period."""
    if period_from.tzinfo is None:
        raise invalid_field("from", "must carry a UTC offset")
    if period_to.tzinfo is None:
        raise invalid_field("to", "must carry a UTC offset")
    if period_to <= period_from:
        raise invalid_field("to", "must be after from")
    if (period_to - period_from).days > MAX_PERIOD_DAYS:
        raise invalid_field("to", f"a period is at most {MAX_PERIOD_DAYS} days")
    chosen = wanted_clauses(wanted)
    async with tenant_transaction(pool, tenant_id) as conn:
        return await jobs.insert(
            conn, uuid.uuid4(), tenant_id, period_from, period_to, chosen, requested_by
        )


async def export_status(pool: asyncpg.Pool, tenant_id: str, job_id: uuid.UUID) -> ExportJob:
    """A job of the tenant; 404 otherwise."""
    async with tenant_transaction(pool, tenant_id, readonly=True) as conn:
        job = await jobs.get(conn, job_id)
    if job is None:
        raise NotFound("evidence export", str(job_id))
    return job


async def archive_of(pool: asyncpg.Pool, tenant_id: str, job: ExportJob) -> bytes | None:
    """A finished job's archive; None until it is done."""
    if job.state != "done":
        return None
    async with tenant_transaction(pool, tenant_id, readonly=True) as conn:
        return await jobs.archive_of(conn, job.id)


# --- the archive --------------------------------------------------------------------------------


def sha256_of_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def manifest_of(directory: Path, about: dict[str, Any]) -> dict[str, Any]:
    """The manifest: what the export is, and the SHA-256 of every file beside it."""
    files = {
        path.relative_to(directory).as_posix(): sha256_of_file(path)
        for path in sorted(directory.rglob("*"))
        if path.is_file() and path.name != "manifest.json"
    }
    return {**about, "files": files}


def pack(directory: Path, root: str) -> bytes:
    """The directory as one .tar.gz under `root/`, members in name order with fixed times and
    owners, so the same content gives the same archive bytes."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz", compresslevel=6) as tar:
        for path in sorted(directory.rglob("*")):
            if not path.is_file():
                continue
            info = tarfile.TarInfo(f"{root}/{path.relative_to(directory).as_posix()}")
            info.size = path.stat().st_size
            info.mtime = 0
            info.mode = 0o644
            with path.open("rb") as f:
                tar.addfile(info, f)
    return out.getvalue()


def readme_of(about: dict[str, Any]) -> str:
    """The auditor's README of an export."""
    previous = about.get("previous_tree_size")
    earlier = (
        f"the checkpoint of the previous export (size {previous}) and the proof that this log"
        " extends it"
        if previous is not None
        else "absent: no earlier export for this log to extend"
    )
    size, first = about["tree_size"], about["first_index"]
    period_first, period_last = about["period_first_index"], about["period_last_index"]
    return f"""# Evidence export {about["export_id"]}

Tenant `{about["tenant_id"]}`, events whose time is in [{about["period"]["from"]},
{about["period"]["to"]}), clauses {", ".join(about["clauses"])}.

## What is in it

| file | content |
|---|---|
| `manifest.json` | what this export is, and the SHA-256 of every other file |
| `checkpoint` | the signed checkpoint (C2SP signed note) of the tenant's log, tree size {size} |
| `entries.jsonl` | the log's entries {first} .. {size - 1}: `{{"index", "entry"}}`, the entry \
being the event's canonical bytes in base64 |
| `proofs.jsonl` | an inclusion proof of every entry in the checkpoint's tree |
| `keys` | the ledger's verifier keys (a convenience: trust keys you obtained independently) |
| `previous-checkpoint`, `consistency.json` | {earlier} |
| `clauses/*.csv`, `clauses/*.json` | the records per ISO/IEC 20000-1 clause, from the period's \
events |
| `verifier.py` | the stand-alone verifier (Python 3.11+, `cryptography`) |

The period's own events are the entries {period_first} .. {period_last} (none when empty); the
entries after them up to the checkpoint are in the bundle because a bundle runs to its
checkpoint. Each clause row names the `leaf_index` of its event, so any row can be traced to
its entry and its proof.

## Verifying it offline

```
python3 -c 'import json; [print(h + "  " + p) for p, h in
  json.load(open("manifest.json"))["files"].items()]' | sha256sum -c
python3 verifier.py . --keys YOUR_TRUSTED_KEYS --origin {about["origin"]}
python3 verifier.py . --keys YOUR_TRUSTED_KEYS --earlier CHECKPOINT_YOU_KEPT
cp checkpoint checkpoint-from-this-audit   # keep it: the next export must extend it
```

The verifier checks the checkpoint's signature, every entry against it, every inclusion
proof, and the consistency with the previous export's checkpoint and with any checkpoint you
kept; it prints `OK ...` and exits 0, or `FAILED: ...` with the first bad index and exits 1.

## The clause files

Every file has the same columns whether or not the period had events of its kind (a clause
with none is its header alone); JSON files hold `{{"clause", "columns", "records"}}`.

{clauses.describe_columns()}"""


def write_clauses_and_readme(
    directory: Path,
    wanted: Sequence[str],
    period: Sequence[clauses.LoggedEvent],
    about: dict[str, Any],
) -> None:
    """The clause files, the verifier, the README and, last, the manifest of them all."""
    (directory / "clauses").mkdir()
    for clause_id in wanted:
        header = clauses.header_of(clause_id)
        rows = clauses.records_of(clause_id, period)
        # The stem has dots of its own (8.6.1-...): the suffix is appended, never substituted.
        stem = clauses.stem_of(clause_id)
        (directory / "clauses" / f"{stem}.csv").write_bytes(clauses.to_csv(header, rows))
        (directory / "clauses" / f"{stem}.json").write_bytes(
            clauses.to_json(clause_id, header, rows)
        )
    (directory / "verifier.py").write_bytes(VERIFIER_SOURCE.read_bytes())
    (directory / "README.md").write_text(readme_of(about), encoding="utf-8")
    manifest = manifest_of(directory, about)
    (directory / "manifest.json").write_text(
        json.dumps(manifest, indent=1, sort_keys=True), encoding="utf-8"
    )


@dataclass(frozen=True)
class Plan:
    """Which part of the log an export holds."""

    first_index: int
    tree_size: int
    previous_size: int | None
    period_first: int | None
    period_last: int | None


class WaitForCheckpoint(Exception):
    """No signed checkpoint holds the period yet (the log's key is still being recorded)."""


class NothingToExport(Exception):
    """The tenant's log is empty: there is no checkpoint a bundle could stand on."""


Progress = Callable[[int, int], Awaitable[None] | None]


class ExportRunner:
    """Runs export jobs: claims, plans, builds, stores, announces."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        signer: CheckpointSigner | None,
        origin_prefix: str,
        *,
        poll_seconds: float = 1.0,
    ) -> None:
        self.pool = pool
        self.signer = signer
        self.origin_prefix = origin_prefix
        self.poll_seconds = poll_seconds

    async def run_forever(self) -> None:
        """Take the jobs nobody holds, one after another (the background task)."""
        while True:
            try:
                await self.run_pending()
            except (OSError, asyncpg.PostgresError):
                logger.exception("evidence export round failed; retrying")
            await asyncio.sleep(self.poll_seconds)

    async def run_pending(self) -> int:
        """One pass over the claimable jobs; how many finished."""
        async with all_tenants_transaction(self.pool) as conn:
            found = await jobs.claimable(conn)
        finished = 0
        for job_id, tenant_id in found:
            if await self.run(job_id, tenant_id) is not None:
                finished += 1
        return finished

    async def run(
        self, job_id: uuid.UUID, tenant_id: str, progress: Progress | None = None
    ) -> ExportJob | None:
        """Claim and build one job; the finished job, None if it is held or must wait."""
        async with tenant_transaction(self.pool, tenant_id) as conn:
            job = await jobs.claim(conn, job_id, LEASE_SECONDS)
        if job is None:
            return None
        try:
            plan = await self._plan(job)
            archive = await self._build(job, plan, progress)
        except WaitForCheckpoint as exc:
            async with tenant_transaction(self.pool, tenant_id) as conn:
                await jobs.release(conn, job_id, str(exc), counted=False)
            return None
        except NothingToExport as exc:
            # Events may still be on their way into a new tenant's log: tried a few times.
            async with tenant_transaction(self.pool, tenant_id) as conn:
                if job.attempts >= MAX_ATTEMPTS:
                    await jobs.fail(conn, job_id, str(exc))
                else:
                    await jobs.release(conn, job_id, str(exc))
            return None
        except Exception as exc:  # a job's failure is recorded, not raised
            logger.exception("evidence export failed", extra={"export_id": str(job_id)})
            async with tenant_transaction(self.pool, tenant_id) as conn:
                if job.attempts >= MAX_ATTEMPTS:
                    await jobs.fail(conn, job_id, f"{type(exc).__name__}: {exc}")
                else:
                    await jobs.release(conn, job_id, f"{type(exc).__name__}: {exc}")
            return None
        return await self._finish(job, plan, archive)

    async def _plan(self, job: ExportJob) -> Plan:
        if job.first_index is not None and job.tree_size is not None:
            return Plan(
                job.first_index,
                job.tree_size,
                job.previous_size,
                job.period_first,
                job.period_last,
            )
        tenant = job.tenant_id
        async with tenant_transaction(self.pool, tenant, readonly=True) as conn:
            period_first, period_last = await jobs.period_indexes(
                conn, tenant, job.period_from, job.period_to
            )
            size = await self._covering(conn, tenant, period_last)
        if size is None and self.signer is not None:
            await self.signer.checkpoint(tenant, trigger="export", on_demand=True)
            async with tenant_transaction(self.pool, tenant, readonly=True) as conn:
                size = await self._covering(conn, tenant, period_last)
        if size is None:
            async with tenant_transaction(self.pool, tenant, readonly=True) as conn:
                head = await log.read_head(conn, tenant)
            if head is None or head.size == 0:
                raise NothingToExport("the tenant's log is empty: there is no evidence to export")
            raise WaitForCheckpoint("waiting for a signed checkpoint that holds the period")
        first = period_first if period_first is not None else size - 1
        async with tenant_transaction(self.pool, tenant) as conn:
            previous = await jobs.previous_export_size(conn, tenant, job.id, size)
            await jobs.save_plan(
                conn,
                job.id,
                first_index=first,
                tree_size=size,
                previous_size=previous,
                period_first=period_first,
                period_last=period_last,
            )
        return Plan(first, size, previous, period_first, period_last)

    @staticmethod
    async def _covering(conn: Any, tenant: str, period_last: int | None) -> int | None:
        if period_last is not None:
            return await jobs.covering_checkpoint_size(conn, tenant, period_last)
        newest = await store.latest(conn, tenant)
        return None if newest is None or newest.tree_size == 0 else newest.tree_size

    def _about(self, job: ExportJob, plan: Plan, root: bytes) -> dict[str, Any]:
        return {
            "format": "itsm-evidence-export/1",
            "export_id": str(job.id),
            "tenant_id": job.tenant_id,
            "origin": f"{self.origin_prefix}/{job.tenant_id}",
            "period": {"from": job.period_from.isoformat(), "to": job.period_to.isoformat()},
            "clauses": list(job.clauses),
            "requested_by": job.requested_by,
            "tree_size": plan.tree_size,
            "root_hash": base64.b64encode(root).decode("ascii"),
            "first_index": plan.first_index,
            "period_first_index": plan.period_first,
            "period_last_index": plan.period_last,
            "previous_tree_size": plan.previous_size,
        }

    async def _build(self, job: ExportJob, plan: Plan, progress: Progress | None) -> bytes:
        tenant = job.tenant_id
        size = plan.tree_size
        total = size - plan.first_index
        with tempfile.TemporaryDirectory(prefix="evidence-") as scratch:
            directory = Path(scratch)
            async with tenant_transaction(self.pool, tenant, readonly=True) as conn:
                checkpoint = await store.at_size(conn, tenant, size)
                keys = await store.keys(conn)
                previous = (
                    None
                    if plan.previous_size is None
                    else await store.at_size(conn, tenant, plan.previous_size)
                )
                consistency = (
                    None
                    if plan.previous_size is None
                    else await log.consistency_proof(conn, tenant, plan.previous_size, size)
                )
            if checkpoint is None:
                raise RuntimeError(f"the checkpoint of size {size} is not stored")
            (directory / "checkpoint").write_text(checkpoint.note, encoding="utf-8")
            (directory / "keys").write_text(
                "".join(f"{key.verifier_key}\n" for key in keys), encoding="utf-8"
            )
            if previous is not None and consistency is not None:
                (directory / "previous-checkpoint").write_text(previous.note, encoding="utf-8")
                (directory / "consistency.json").write_text(
                    json.dumps(
                        {
                            "first": previous.tree_size,
                            "second": size,
                            "proof": [base64.b64encode(h).decode() for h in consistency],
                        }
                    ),
                    encoding="utf-8",
                )
            about = self._about(job, plan, checkpoint.root_hash)
            period: list[clauses.LoggedEvent] = []
            done = 0
            with (
                (directory / "entries.jsonl").open("wb") as entries,
                (directory / "proofs.jsonl").open("wb") as proofs,
            ):
                for start, end in chunks(plan.first_index, size):
                    block = end - start == CHUNK and start % CHUNK == 0
                    async with tenant_transaction(self.pool, tenant, readonly=True) as conn:
                        rows = await log.entries(conn, tenant, start, end)
                        refs = sorted(
                            {
                                ref
                                for i in ([start] if block else range(start, end))
                                for ref in merkle.inclusion_nodes(i, size)
                            }
                        )
                        nodes = await log.nodes(conn, tenant, refs)
                    if len(rows) != end - start:
                        raise RuntimeError(f"the log lacks entries in [{start}, {end})")
                    paths = (
                        merkle.block_proofs(start, [row["leaf_hash"] for row in rows], size, nodes)
                        if block
                        else [merkle.inclusion_proof(i, size, nodes) for i in range(start, end)]
                    )
                    for row, path in zip(rows, paths, strict=True):
                        index = row["leaf_index"]
                        entries.write(verifier.entry_line(index, jobs.canonical_of_row(row)))
                        entries.write(b"\n")
                        proofs.write(verifier.proof_line(index, size, path))
                        proofs.write(b"\n")
                        event = jobs.logged_event(row)
                        if job.period_from <= event.time < job.period_to:
                            period.append(event)
                    done = end - plan.first_index
                    async with tenant_transaction(self.pool, tenant) as conn:
                        await jobs.progress(conn, job.id, done, LEASE_SECONDS)
                    if progress is not None:
                        shown = progress(done, total)
                        if shown is not None:
                            await shown
            write_clauses_and_readme(directory, job.clauses, period, about)
            return pack(directory, f"evidence-{job.id}")

    async def _finish(self, job: ExportJob, plan: Plan, archive: bytes) -> ExportJob:
        digest = hashlib.sha256(archive).hexdigest()
        async with tenant_transaction(self.pool, job.tenant_id) as conn:
            checkpoint = await store.at_size(conn, job.tenant_id, plan.tree_size)
            assert checkpoint is not None
            await jobs.finish(conn, job.id, archive, digest)
            await writer.append(
                conn,
                EvidenceExportedV1(
                    export_id=str(job.id),
                    period_from=job.period_from,
                    period_to=job.period_to,
                    clauses=list(job.clauses),
                    archive_sha256=digest,
                    tree_size=plan.tree_size,
                    root_hash=base64.b64encode(checkpoint.root_hash).decode("ascii"),
                    first_index=plan.first_index,
                    previous_tree_size=plan.previous_size,
                ),
                subject=export_subject(job.id),
                tenant_id=job.tenant_id,
                sequence=1,
                actor=job.requested_by,
            )
            finished = await jobs.get(conn, job.id)
        assert finished is not None
        return finished


# --- samples ------------------------------------------------------------------------------------


async def sample(
    pool: asyncpg.Pool,
    tenant_id: str,
    clause_id: str,
    n: int,
    seed: str,
    *,
    period_from: datetime | None = None,
    period_to: datetime | None = None,
    signer: CheckpointSigner | None = None,
) -> dict[str, Any]:
    """A sample of a clause's records with their full timelines and an inclusion proof of every
    event in the newest signed checkpoint (signed now when the log grew since)."""
    if clause_id not in clauses.CLAUSE_IDS:
        raise invalid_field("clause", f"one of {', '.join(clauses.CLAUSE_IDS)}", "query")
    if signer is not None:
        await signer.checkpoint(tenant_id, trigger="sample", on_demand=True)
    async with tenant_transaction(pool, tenant_id, readonly=True) as conn:
        checkpoint = await store.latest(conn, tenant_id)
        if checkpoint is None:
            raise NotFound("checkpoint", "of this tenant's log (none is signed yet)")
        size = checkpoint.tree_size
        events = await jobs.events_in(conn, tenant_id, size, period_from, period_to)
        records = clauses.records_of(clause_id, events)
        chosen = clauses.sample_ids([str(r["record_id"]) for r in records], n, seed)
        timelines = await jobs.events_of_subjects(conn, tenant_id, chosen, size)
        refs = sorted(
            {(0, e.leaf_index) for e in timelines}
            | {ref for e in timelines for ref in merkle.inclusion_nodes(e.leaf_index, size)}
        )
        nodes = await log.nodes(conn, tenant_id, refs)
    b64 = base64.b64encode
    by_record: dict[str, list[dict[str, Any]]] = {record_id: [] for record_id in chosen}
    for event in timelines:
        by_record[event.subject].append(
            {
                "leaf_index": event.leaf_index,
                "event_id": event.event_id,
                "type": event.type,
                "version": event.version,
                "time": event.time.astimezone(UTC).isoformat(),
                "actor": event.actor,
                "data": dict(event.data),
                "leaf_hash": b64(nodes[(0, event.leaf_index)]).decode("ascii"),
                "proof": [
                    b64(h).decode("ascii")
                    for h in merkle.inclusion_proof(event.leaf_index, size, nodes)
                ],
            }
        )
    return {
        "clause": clause_id,
        "seed": seed,
        "n": n,
        "population": len({str(r["record_id"]) for r in records}),
        "tree_size": size,
        "root_hash": b64(checkpoint.root_hash).decode("ascii"),
        "checkpoint": checkpoint.note,
        "records": [{"record_id": rid, "events": by_record[rid]} for rid in chosen],
    }
