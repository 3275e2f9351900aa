"""A numbered, versioned record with history and events: the building block of incidents,
service requests and problems, and of changes and releases to come.

Import the part a layer may use, never this package for its contents: `record` and `workflow`
are pure (for `domain/`), `sql` is the PostgreSQL repository (for `adapters/`), and
`shared/http/records.py` holds the HTTP pieces (for `entrypoints/`). This module imports
nothing, so importing a pure part never drags asyncpg or FastAPI into a domain module.
"""
