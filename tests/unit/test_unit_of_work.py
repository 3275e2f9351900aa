"""The unit of work: events written once at commit, reactions inside it, nothing on failure."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from shared.context import RequestContext
from shared.events.catalogue import WorkNoteAddedV1
from shared.uow import Reactions, Recorded, UnitOfWork

CONTEXT = RequestContext("tenant-a", "alice", "corr-1")


class FakeUnitOfWork(UnitOfWork):
    def __init__(self, reactions: Reactions[FakeUnitOfWork] | None = None) -> None:
        super().__init__(CONTEXT, reactions)
        self.written: list[Recorded] = []
        self.committed = False
        self.rolled_back = False

    async def _write_events(self, events: Sequence[Recorded]) -> None:
        self.written.extend(events)

    async def _commit(self) -> None:
        self.committed = True

    async def _rollback(self) -> None:
        self.rolled_back = True


async def test_recorded_events_are_written_once_in_order_at_commit() -> None:
    uow = FakeUnitOfWork()
    async with uow:
        uow.record("a", 1, [WorkNoteAddedV1(note="one"), WorkNoteAddedV1(note="two")])
        uow.record("b", 4, [WorkNoteAddedV1(note="three")])
        assert uow.written == []
    assert [(e.subject, e.version, e.payload.note) for e in uow.written] == [  # type: ignore[attr-defined]
        ("a", 1, "one"),
        ("a", 1, "two"),
        ("b", 4, "three"),
    ]
    assert uow.committed and not uow.rolled_back


async def test_a_failing_use_case_writes_no_event_and_rolls_back() -> None:
    uow = FakeUnitOfWork()
    with pytest.raises(ValueError, match="refused"):
        async with uow:
            uow.record("a", 1, [WorkNoteAddedV1(note="one")])
            raise ValueError("refused")
    assert uow.written == []
    assert uow.rolled_back and not uow.committed


async def test_reactions_run_before_the_commit_and_their_events_are_written_too() -> None:
    async def echo(uow: FakeUnitOfWork, event: Recorded) -> None:
        note = event.payload.note  # type: ignore[attr-defined]
        if not note.startswith("re:"):
            uow.record(event.subject, event.version + 1, [WorkNoteAddedV1(note="re:" + note)])

    uow = FakeUnitOfWork(Reactions({WorkNoteAddedV1: [echo]}))
    async with uow:
        uow.record("a", 1, [WorkNoteAddedV1(note="hello")])
    assert [e.payload.note for e in uow.written] == ["hello", "re:hello"]  # type: ignore[attr-defined]


async def test_a_reaction_that_fails_rolls_back_the_whole_use_case() -> None:
    async def refuse(uow: FakeUnitOfWork, event: Recorded) -> None:
        raise RuntimeError("clock store down")

    uow = FakeUnitOfWork(Reactions({WorkNoteAddedV1: [refuse]}))
    with pytest.raises(RuntimeError, match="clock store down"):
        async with uow:
            uow.record("a", 1, [WorkNoteAddedV1(note="hello")])
    assert uow.written == []
    assert not uow.committed


async def test_reactions_that_never_stop_recording_are_refused_as_a_bug() -> None:
    async def forever(uow: FakeUnitOfWork, event: Recorded) -> None:
        uow.record("a", event.version + 1, [WorkNoteAddedV1(note="again")])

    uow = FakeUnitOfWork(Reactions({WorkNoteAddedV1: [forever]}))
    with pytest.raises(RuntimeError, match="reactions still recording"):
        async with uow:
            uow.record("a", 1, [WorkNoteAddedV1(note="start")])
    assert uow.written == []


async def test_react_runs_the_reactions_so_far_once_and_the_commit_only_the_later_ones() -> None:
    seen: list[str] = []

    async def note(uow: FakeUnitOfWork, event: Recorded) -> None:
        seen.append(event.payload.note)  # type: ignore[attr-defined]

    uow = FakeUnitOfWork(Reactions({WorkNoteAddedV1: [note]}))
    async with uow:
        uow.record("a", 1, [WorkNoteAddedV1(note="first")])
        await uow.react()
        assert seen == ["first"] and uow.written == []
        await uow.react()  # nothing new: no reaction runs twice
        uow.record("a", 1, [WorkNoteAddedV1(note="second")])
    assert seen == ["first", "second"]
    assert [e.payload.note for e in uow.written] == ["first", "second"]  # type: ignore[attr-defined]
