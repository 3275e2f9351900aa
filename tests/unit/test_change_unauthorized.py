"""The change service's unauthorized changes (issue 19): a detection from the config service
opens one change for review (origin `unauthorized`, type `normal`, state `new`, the CI as its
affected CI, a title saying what was found), and the same detection again opens nothing."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from services.change.application.unauthorized import MAX_TITLE, open_unauthorized, title_of
from services.change.application.uow import ChangeWork
from services.change.domain.change import Change
from shared.context import RequestContext
from shared.events.catalogue import ChangeCreatedV1, CiStateV1, UnauthorizedChangeDetectedV1
from shared.uow import Recorded

NOW = datetime(2026, 12, 3, 4, 0, tzinfo=UTC)


class _Changes:
    def __init__(self) -> None:
        self.rows: dict[uuid.UUID, Change] = {}
        self.history: list[tuple[uuid.UUID, str]] = []
        self.last = 0

    async def next_number(self) -> int:
        self.last += 1
        return self.last

    async def insert(self, change: Change) -> None:
        self.rows[change.id] = change

    async def record_history(self, change: Change, *, action: str, changes: dict[str, Any]) -> None:
        self.history.append((change.id, action))


class _Detections:
    def __init__(self, services: Sequence[str] = ()) -> None:
        self.rows: dict[uuid.UUID, dict[str, Any]] = {}
        self.services = list(services)

    async def seen(self, detection_id: uuid.UUID) -> bool:
        return detection_id in self.rows

    async def record(self, detection_id: uuid.UUID, **row: Any) -> None:
        assert detection_id not in self.rows
        self.rows[detection_id] = row

    async def services_of(self, ci_id: uuid.UUID) -> Sequence[str]:
        return self.services


class FakeWork(ChangeWork):
    """An in-memory unit of work with the two repositories the consumer uses."""

    def __init__(self, changes: _Changes, detections: _Detections) -> None:
        super().__init__(RequestContext("tenant-a", "system:change-control", "corr-1"))
        self.changes = changes  # type: ignore[assignment]
        self.unauthorized = detections
        self.events: list[Recorded] = []

    async def _write_events(self, events: Sequence[Recorded]) -> None:
        self.events.extend(events)

    async def _commit(self) -> None:
        pass

    async def _rollback(self) -> None:
        pass


def detection(
    found_by: str = "ci_modified", **changes: dict[str, Any]
) -> UnauthorizedChangeDetectedV1:
    ci = CiStateV1(
        id=str(uuid.uuid4()),
        ci_class="server",
        name="web-1",
        status="active",
        owner_team=None,
        criticality=2,
        attributes={},
        external_ids={},
        controlled=True,
        version=3,
        updated_at=NOW,
        updated_by="mallory",
    )
    return UnauthorizedChangeDetectedV1(
        ci=ci,
        found_by=found_by,  # type: ignore[arg-type]
        changes=changes or {"criticality": {"from": 3, "to": 2}},
        by="mallory" if found_by == "ci_modified" else "discovery:vcenter",
        import_id=None if found_by == "ci_modified" else str(uuid.uuid4()),
    )


async def test_a_detection_opens_a_new_normal_unauthorized_change_on_the_ci():
    changes, detections = _Changes(), _Detections(["svc-shop"])
    uow = FakeWork(changes, detections)
    found = detection()
    detection_id = uuid.uuid4()
    async with uow:
        change = await open_unauthorized(
            uow, found, detection_id=detection_id, detected_at=NOW, now=NOW
        )
    assert change is not None
    assert (change.type, change.origin, change.state, change.number) == (
        "normal",
        "unauthorized",
        "new",
        1,
    )
    assert change.affected_cis == (uuid.UUID(found.ci.id),)
    assert change.business_services == ("svc-shop",)
    assert change.requester == "mallory" and change.created_by == "system:change-control"
    assert change.title == "Unauthorized change on web-1: criticality (modified without a change)"
    assert "criticality" in change.description
    assert changes.history == [(change.id, "created")]
    assert detections.rows[detection_id]["change_id"] == change.id
    (event,) = uow.events
    assert isinstance(event.payload, ChangeCreatedV1)
    assert (event.payload.origin, event.payload.ci_ids) == ("unauthorized", [found.ci.id])


async def test_the_same_detection_again_opens_nothing():
    changes, detections = _Changes(), _Detections()
    detection_id, found = uuid.uuid4(), detection("drift")
    for _ in range(2):
        uow = FakeWork(changes, detections)
        async with uow:
            await open_unauthorized(uow, found, detection_id=detection_id, detected_at=NOW)
    assert len(changes.rows) == 1 and len(detections.rows) == 1


def test_a_title_names_the_ci_the_fields_and_how_it_was_found_within_the_limit():
    drift = detection("drift", **{"attributes.os": {"recorded": "a", "discovered": "b"}})
    assert (
        title_of(drift) == "Unauthorized change on web-1: attributes.os (drift found by discovery)"
    )
    many = detection(**{f"attributes.field_{i:03}": {"from": 1, "to": 2} for i in range(40)})
    assert len(title_of(many)) == MAX_TITLE and title_of(many).endswith("…")
