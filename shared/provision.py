"""Create the platform's database, one schema per service and one login role per schema.

Each service's role owns its schema and has no privilege on any other: `python -m
shared.provision` runs this against any PostgreSQL server (local runs, docker-compose, deploy).
"""

from __future__ import annotations

import argparse
import asyncio
import os
from collections.abc import Mapping
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg

from shared.registry import SERVICE_NAMES, SERVICES

DEFAULT_DATABASE = "itsm"


def _ident(name: str) -> str:
    """Quote an identifier; names here come from our own constants, never from requests."""
    if not name.replace("_", "").isalnum():
        raise ValueError(f"refusing identifier {name!r}")
    return '"' + name + '"'


def dsn_for(admin_dsn: str, *, user: str, password: str, database: str) -> str:
    """The admin DSN's host and port with another user, password and database."""
    parts = urlsplit(admin_dsn)
    host = parts.hostname or "127.0.0.1"
    netloc = f"{quote(user)}:{quote(password, safe='')}@{host}"
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, "/" + database, parts.query, ""))


async def provision(
    admin_dsn: str, passwords: Mapping[str, str], database: str = DEFAULT_DATABASE
) -> None:
    """Idempotently create the database, roles and schemas; (re)set each role's password."""
    admin = await asyncpg.connect(admin_dsn)
    try:
        if not await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database):
            await admin.execute(
                f"CREATE DATABASE {_ident(database)} ENCODING 'UTF8' TEMPLATE template0"
            )
        for name in SERVICE_NAMES:
            role = _ident(name)
            exists = await admin.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", name)
            verb = "ALTER" if exists else "CREATE"
            # Passwords cannot be bind parameters in DDL; quote_literal does the escaping.
            literal = await admin.fetchval("SELECT quote_literal($1)", passwords[name])
            await admin.execute(
                f"{verb} ROLE {role} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION"
                f" NOBYPASSRLS PASSWORD {literal}"
            )
    finally:
        await admin.close()

    db = await asyncpg.connect(dsn_for_admin_database(admin_dsn, database))
    try:
        async with db.transaction():
            await db.execute(f"REVOKE ALL ON DATABASE {_ident(database)} FROM PUBLIC")
            await db.execute("REVOKE ALL ON SCHEMA public FROM PUBLIC")
            for service in SERVICES:
                role, schema = _ident(service.name), _ident(service.schema)
                await db.execute(
                    f"GRANT CONNECT, TEMPORARY ON DATABASE {_ident(database)} TO {role}"
                )
                await db.execute(f"CREATE SCHEMA IF NOT EXISTS {schema} AUTHORIZATION {role}")
                await db.execute(f"ALTER SCHEMA {schema} OWNER TO {role}")
                await db.execute(f"REVOKE ALL ON SCHEMA {schema} FROM PUBLIC")
                await db.execute(
                    f"ALTER ROLE {role} IN DATABASE {_ident(database)} SET search_path = {schema}"
                )
    finally:
        await db.close()


def dsn_for_admin_database(admin_dsn: str, database: str) -> str:
    """The admin DSN pointed at another database."""
    parts = urlsplit(admin_dsn)
    return urlunsplit((parts.scheme, parts.netloc, "/" + database, parts.query, ""))


def main() -> None:
    """`python -m shared.provision --admin-url URL`: passwords from <SERVICE>_DB_PASSWORD."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--admin-url", default=os.environ.get("DATABASE_URL"), required=False)
    parser.add_argument("--database", default=DEFAULT_DATABASE)
    args = parser.parse_args()
    if not args.admin_url:
        parser.error("--admin-url or DATABASE_URL is required")
    variables = {s.name: f"{s.env_prefix}DB_PASSWORD" for s in SERVICES}
    missing = [variable for variable in variables.values() if variable not in os.environ]
    if missing:
        parser.error("set " + ", ".join(missing))
    passwords = {name: os.environ[variable] for name, variable in variables.items()}
    asyncio.run(provision(args.admin_url, passwords, args.database))


if __name__ == "__main__":
    main()
