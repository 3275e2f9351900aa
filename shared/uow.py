"""The unit of work: one use case's transaction, its tenant, and the events it records.

As in *Architecture Patterns with Python* (chapters 6 and 8): a use case opens a unit of work,
reads and writes through the repositories it gives, and records the events its aggregates
produced with `record`. Before the commit, the unit of work runs the service's reactions to
those events (`Reactions`: start the SLA clocks of a new incident, attach a known error,
suggest a problem from a trend), which may record more; then it writes every recorded event
to the outbox at once, in order, and commits. Nothing is written if the use case or a reaction
raises.

A service subclasses `UnitOfWork` to name its repositories; `PostgresUnitOfWork` is the real
transaction (`shared/db.tenant_transaction`, `shared/outbox.append_many`), and a unit test
drives the same use case with a fake that keeps everything in memory.
"""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Generic, Protocol, Self, TypeVar

import asyncpg

from shared import outbox
from shared.context import RequestContext
from shared.db import Connection, tenant_transaction
from shared.events.catalogue import EventPayload


@dataclass(frozen=True)
class Recorded:
    """An event a use case recorded: the payload, its aggregate, and the aggregate's version
    after it (the `itsmversion` attribute on the wire)."""

    payload: EventPayload
    subject: str
    version: int


U = TypeVar("U", bound="UnitOfWork")
Reaction = Callable[[U, Recorded], Awaitable[None]]


class Reactions(Generic[U]):
    """A service's reactions to the events its own use cases record, by payload class.

    A reaction runs inside the same unit of work, before the commit: its writes and the events
    it records commit (or roll back) with the use case that caused them.
    """

    def __init__(self, handlers: Mapping[type[EventPayload], Sequence[Reaction[U]]]) -> None:
        self._handlers = {kind: tuple(found) for kind, found in handlers.items()}

    def for_payload(self, payload: EventPayload) -> tuple[Reaction[U], ...]:
        """The reactions to one payload (none for most)."""
        return self._handlers.get(type(payload), ())


class OnTransaction(Protocol):
    """A unit of work's open transaction, as its repositories see it: the connection and the
    tenant every query is scoped to."""

    @property
    def conn(self) -> Connection: ...

    @property
    def tenant_id(self) -> str: ...


class TransactionStore:
    """Base of a repository that reads and writes on a unit of work's connection, scoped to its
    tenant (`self._conn`, `self._tenant`)."""

    def __init__(self, uow: OnTransaction) -> None:
        self._uow = uow

    @property
    def _conn(self) -> Connection:
        return self._uow.conn

    @property
    def _tenant(self) -> str:
        return self._uow.tenant_id


class UnitOfWork(abc.ABC):
    """One use case's transaction; subclasses name the repositories it gives."""

    # The longest chain of reactions to reactions: a loop is a bug, not a workload.
    MAX_REACTION_ROUNDS = 16

    def __init__(self, context: RequestContext, reactions: Reactions[Any] | None = None) -> None:
        self.context = context
        self.reactions = reactions
        self._recorded: list[Recorded] = []
        self._reacted = 0  # how many recorded events the reactions have seen
        self._committed = False

    @property
    def tenant_id(self) -> str:
        """The tenant every read and write of this unit of work is scoped to."""
        return self.context.tenant_id

    def record(self, subject: str, version: int, events: Sequence[EventPayload]) -> None:
        """Remember the events an aggregate produced; they are written at commit, in order."""
        self._recorded.extend(Recorded(payload, subject, version) for payload in events)

    @property
    def recorded(self) -> tuple[Recorded, ...]:
        """Every event recorded so far (a fake's assertions read it)."""
        return tuple(self._recorded)

    async def commit(self) -> None:
        """Run the reactions, write every recorded event to the outbox, commit."""
        await self.react()
        await self._write_events(self._recorded)
        await self._commit()
        self._committed = True

    async def react(self) -> None:
        """Run the reactions to the events recorded so far, now; the commit runs the rest.

        A use case calls it when what it does next depends on the reactions (the clocks a
        reaction started, the record as a reaction left it). Each event gets its reactions once.
        """
        if self.reactions is None:
            return
        for _ in range(self.MAX_REACTION_ROUNDS):
            pending = self._recorded[self._reacted :]
            if not pending:
                return
            self._reacted = len(self._recorded)
            for event in pending:
                for reaction in self.reactions.for_payload(event.payload):
                    await reaction(self, event)
        raise RuntimeError(f"reactions still recording events after {self.MAX_REACTION_ROUNDS}")

    @abc.abstractmethod
    async def _write_events(self, events: Sequence[Recorded]) -> None:
        """Store the recorded events (the outbox, or a fake's list)."""

    @abc.abstractmethod
    async def _commit(self) -> None:
        """Make the writes durable."""

    @abc.abstractmethod
    async def _rollback(self) -> None:
        """Discard the writes."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if kind is None and not self._committed:
            await self.commit()
        elif kind is not None:
            await self._rollback()


class PostgresUnitOfWork(UnitOfWork):
    """The real unit of work: one tenant transaction on the service's pool.

    Leaving the `async with` block normally commits (reactions, outbox, transaction); an
    exception rolls everything back. Inside a request transaction (`shared/http/idempotency`)
    it is a savepoint of it, so the stored answer commits with the use case.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        context: RequestContext,
        reactions: Reactions[Any] | None = None,
    ) -> None:
        super().__init__(context, reactions)
        self._pool = pool
        self._transaction: AbstractAsyncContextManager[Connection] | None = None
        self._conn: Connection | None = None

    @property
    def conn(self) -> Connection:
        """The transaction's connection, for the service's repositories."""
        if self._conn is None:
            raise RuntimeError("the unit of work is not open: use `async with`")
        return self._conn

    async def __aenter__(self) -> Self:
        self._transaction = tenant_transaction(self._pool, self.tenant_id)
        self._conn = await self._transaction.__aenter__()
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._transaction is not None
        transaction, self._transaction = self._transaction, None
        try:
            if kind is None and not self._committed:
                await self.commit()
        except BaseException as failure:
            await transaction.__aexit__(type(failure), failure, failure.__traceback__)
            raise
        finally:
            self._conn = None
        await transaction.__aexit__(kind, exc, tb)

    async def _write_events(self, events: Sequence[Recorded]) -> None:
        if not events:
            return
        await outbox.append_many(
            self.conn,
            [outbox.Pending(e.payload, e.subject, e.version) for e in events],
            tenant_id=self.tenant_id,
            actor=self.context.actor,
            correlation_id=self.context.correlation_id,
        )

    async def _commit(self) -> None:
        # The transaction commits when the `async with` block of `tenant_transaction` ends.
        return None

    async def _rollback(self) -> None:
        return None
