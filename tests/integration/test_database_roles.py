"""Each service's role owns its schema and nothing else; migrations apply once, in order."""

import itertools
import uuid
from pathlib import Path

import asyncpg
import pytest

from shared.db import MigrationSource, known_versions, migrate, pending_migrations
from shared.registry import SERVICE_NAMES as SERVICES


@pytest.mark.parametrize(("role", "other"), list(itertools.permutations(SERVICES, 2)))
async def test_a_service_role_cannot_read_another_services_schema(migrated, role, other):
    conn = await asyncpg.connect(migrated.service_dsns[role])
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.fetch(f"SELECT * FROM {other}.schema_migrations")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute(f"CREATE TABLE {other}.intruder (x int)")
    finally:
        await conn.close()


@pytest.mark.parametrize("role", SERVICES)
async def test_a_service_role_cannot_create_objects_outside_its_schema(migrated, role):
    conn = await asyncpg.connect(migrated.service_dsns[role])
    try:
        assert await conn.fetchval("SHOW search_path") == role
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("CREATE TABLE public.intruder (x int)")
        assert not await conn.fetchval(
            "SELECT rolsuper OR rolcreatedb OR rolcreaterole"
            " FROM pg_roles WHERE rolname = current_user"
        )
    finally:
        await conn.close()


@pytest.fixture
async def scratch(infra):
    """A throwaway schema, to exercise the migration runner without touching the services'."""
    from shared.provision import dsn_for_admin_database

    schema = f"scratch_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(
        dsn_for_admin_database(infra.admin_dsn, "itsm"), server_settings={"search_path": schema}
    )
    await conn.execute(f"CREATE SCHEMA {schema}")
    yield conn
    await conn.execute(f"DROP SCHEMA {schema} CASCADE")
    await conn.close()


def write(folder: Path, name: str, sql: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(sql)


async def test_migrations_apply_once_in_version_order(scratch, tmp_path):
    write(tmp_path, "0002_add_column.sql", "ALTER TABLE things ADD COLUMN label text;")
    write(tmp_path, "0001_things.sql", "CREATE TABLE things (id int);")
    source = [MigrationSource("demo", tmp_path)]
    assert await migrate(scratch, source) == ["demo/0001_things", "demo/0002_add_column"]
    assert await migrate(scratch, source) == []
    assert await pending_migrations(scratch, known_versions(source)) == 0


async def test_a_failing_migration_leaves_nothing_half_applied(scratch, tmp_path):
    write(tmp_path, "0001_broken.sql", "CREATE TABLE half (id int); SELECT no_such_function();")
    with pytest.raises(asyncpg.UndefinedFunctionError):
        await migrate(scratch, [MigrationSource("demo", tmp_path)])
    assert await scratch.fetchval("SELECT to_regclass('half')") is None
    assert (
        await pending_migrations(scratch, known_versions([MigrationSource("demo", tmp_path)])) == 1
    )


async def test_editing_an_applied_migration_is_detected(scratch, tmp_path):
    write(tmp_path, "0001_things.sql", "CREATE TABLE things (id int);")
    await migrate(scratch, [MigrationSource("demo", tmp_path)])
    write(tmp_path, "0001_things.sql", "CREATE TABLE things (id bigint);")
    with pytest.raises(RuntimeError, match="edited"):
        await migrate(scratch, [MigrationSource("demo", tmp_path)])


async def test_every_service_schema_is_fully_migrated(migrated, pools):
    from tests.conftest import DEFINITIONS

    for name, definition in DEFINITIONS.items():
        async with pools[name].acquire() as conn:
            assert (
                await pending_migrations(conn, known_versions(definition.migration_sources())) == 0
            )
