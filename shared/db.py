"""PostgreSQL plumbing: one pool per service bound to its schema, and numbered SQL migrations."""

from __future__ import annotations

import hashlib
import json
import logging
import re
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import asyncpg.pool
from pydantic_core import from_json

log = logging.getLogger(__name__)

# A connection of our own or one borrowed from a pool: repositories accept either.
Connection = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy

SHARED_MIGRATIONS = Path(__file__).parent / "migrations"

# Row-level security keys every tenant-owned table on these per-transaction settings: a query
# sees only the rows of the tenant set here, and nothing at all when none is set.
TENANT_SETTING = "itsm.tenant_id"
# Set only by platform jobs that serve every tenant (the outbox relay, housekeeping), and only
# honoured by the policies of the platform's own tables (outbox, inbox, idempotency keys).
ALL_TENANTS_SETTING = "itsm.all_tenants"
_MIGRATION_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


async def _init_connection(conn: Connection) -> None:
    """Decode json/jsonb columns to Python values and back.

    Decoding uses pydantic-core's parser (a third of json.loads' time on the outbox relay's
    headers, which it decodes for every event); the values are the same plain Python ones.
    """
    for name in ("json", "jsonb"):
        await conn.set_type_codec(name, encoder=json.dumps, decoder=from_json, schema="pg_catalog")


async def _keep_clean_session(conn: Connection) -> None:
    """What a pool does to a connection coming back: nothing beyond asyncpg's own rollback.

    asyncpg's default sends `pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL` on
    every release, one more round trip per transaction. Our connections never carry session
    state: tenant and all-tenants settings are transaction-local (`set_config(..., true)`),
    advisory locks are transaction locks (the migration lock is released in a `finally`), the
    outbox listener removes its LISTEN before it gives its connection back, and nothing uses
    cursors outside a transaction or temporary tables. asyncpg still rolls back a transaction
    left open and forgets listeners before calling this.
    """


async def create_pool(
    dsn: str, *, schema: str, application_name: str, min_size: int = 2, max_size: int = 10
) -> asyncpg.Pool:
    """A pool whose connections see only the service's own schema on their search path."""
    pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        init=_init_connection,
        reset=_keep_clean_session,
        server_settings={"search_path": schema, "application_name": application_name},
    )
    assert pool is not None
    return pool


async def set_tenant(conn: Connection, tenant_id: str) -> None:
    """Inside a transaction: make the tenant's rows (and only those) visible until it ends.

    May be called again in the same transaction to switch tenant (consumers applying a batch
    that holds several tenants' events do so between groups).
    """
    if not conn.is_in_transaction():
        raise RuntimeError("set_tenant must run inside a transaction (the setting is local)")
    if not tenant_id:
        raise ValueError("tenant_id must not be empty")
    await conn.execute("SELECT set_config($1, $2, true)", TENANT_SETTING, tenant_id)


class RequestTransaction(ABC):
    """One transaction a whole request's work joins (an idempotent POST: shared/http)."""

    @abstractmethod
    def joins(self) -> bool:
        """Whether the code running now belongs to the request (not a task it started)."""

    @abstractmethod
    async def connection(self, pool: asyncpg.Pool, tenant_id: str) -> Connection:
        """The request's connection, inside its transaction, set to the tenant."""


# Set by the HTTP layer for the duration of a request whose work must commit as one.
request_transaction: ContextVar[RequestTransaction | None] = ContextVar(
    "request_transaction", default=None
)


@asynccontextmanager
async def tenant_transaction(
    pool: asyncpg.Pool, tenant_id: str, *, readonly: bool = False
) -> AsyncIterator[Connection]:
    """A connection in a transaction that sees one tenant's rows: how requests use the database.

    Inside a request transaction it is a savepoint of that transaction instead, so the request's
    writes and its stored answer commit together.
    """
    shared = request_transaction.get()
    if shared is not None and shared.joins():
        conn = await shared.connection(pool, tenant_id)
        async with conn.transaction():
            yield conn
        return
    async with pool.acquire() as conn, conn.transaction(readonly=readonly):
        await set_tenant(conn, tenant_id)
        yield conn


@asynccontextmanager
async def all_tenants_transaction(pool: asyncpg.Pool) -> AsyncIterator[Connection]:
    """A transaction for platform jobs that work across tenants on the platform's own tables.

    Domain tables (incidents, the ledger, ...) do not honour it: their policies know tenants only.
    """
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT set_config($1, 'on', true)", ALL_TENANTS_SETTING)
        yield conn


def stored_instant(value: datetime) -> datetime:
    """A `timestamptz` as read, always aware: asyncpg reads ±infinity as naive min/max."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Migration:
    """One numbered SQL file of one component."""

    component: str
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        """SHA-256 of the file, to notice an applied migration that was edited afterwards."""
        return hashlib.sha256(self.sql.encode()).hexdigest()


@dataclass(frozen=True)
class MigrationSource:
    """A component (a shared building block or the service itself) and its migrations folder."""

    component: str
    directory: Path

    def load(self) -> list[Migration]:
        """The folder's migrations in version order; a misnamed or duplicate file is an error."""
        found: dict[int, Migration] = {}
        for path in sorted(self.directory.glob("*.sql")):
            match = _MIGRATION_NAME.match(path.name)
            if not match:
                raise ValueError(f"{path}: migration files are named NNNN_snake_case.sql")
            version = int(match.group(1))
            if version in found:
                raise ValueError(f"{path}: version {version} appears twice in {self.directory}")
            found[version] = Migration(self.component, version, match.group(2), path.read_text())
        return [found[v] for v in sorted(found)]


def shared_source(component: str) -> MigrationSource:
    """Migrations of a shared building block (outbox, inbox, idempotency)."""
    return MigrationSource(component, SHARED_MIGRATIONS / component)


_BOOKKEEPING = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    component  text        NOT NULL,
    version    integer     NOT NULL,
    name       text        NOT NULL,
    checksum   text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (component, version)
)
"""


async def migrate(conn: Connection, sources: Sequence[MigrationSource]) -> list[str]:
    """Apply pending migrations, each in its own transaction; return the names applied."""
    applied_now: list[str] = []
    # Replicas starting together queue here instead of racing on the same DDL.
    await conn.execute("SELECT pg_advisory_lock(hashtext(current_schema()))")
    try:
        await conn.execute(_BOOKKEEPING)
        for source in sources:
            for migration in source.load():
                row = await conn.fetchrow(
                    "SELECT checksum FROM schema_migrations WHERE component = $1 AND version = $2",
                    migration.component,
                    migration.version,
                )
                label = f"{migration.component}/{migration.version:04d}_{migration.name}"
                if row is not None:
                    if row["checksum"] != migration.checksum:
                        raise RuntimeError(f"migration {label} was edited after it was applied")
                    continue
                async with conn.transaction():
                    await conn.execute(migration.sql)
                    await conn.execute(
                        "INSERT INTO schema_migrations (component, version, name, checksum)"
                        " VALUES ($1, $2, $3, $4)",
                        migration.component,
                        migration.version,
                        migration.name,
                        migration.checksum,
                    )
                log.info("applied migration", extra={"migration": label})
                applied_now.append(label)
    finally:
        await conn.execute("SELECT pg_advisory_unlock(hashtext(current_schema()))")
    return applied_now


def known_versions(sources: Sequence[MigrationSource]) -> frozenset[tuple[str, int]]:
    """(component, version) of every migration the sources hold; read once, compared often."""
    return frozenset((m.component, m.version) for s in sources for m in s.load())


async def pending_migrations(conn: Connection, known: frozenset[tuple[str, int]]) -> int:
    """How many of the known migrations are not yet applied (readiness needs zero)."""
    exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    if not exists:
        return len(known)
    rows = await conn.fetch("SELECT component, version FROM schema_migrations")
    return len(known - {(r["component"], r["version"]) for r in rows})
