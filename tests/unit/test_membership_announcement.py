"""The service-membership event built as data (settle announces tens of thousands at once)."""

from __future__ import annotations

import uuid

from services.config.application.membership import announcement, subject
from shared.events.catalogue import ServiceMembershipChangedV1
from shared.outbox import encode_many


def test_an_announcement_carries_what_the_validated_event_would_dump() -> None:
    ci = uuid.uuid4()
    services = sorted(str(uuid.uuid4()) for _ in range(3))
    pending = announcement(ci, services, [services[0]], 4)
    validated = ServiceMembershipChangedV1(
        ci_id=str(ci), services=services, previous=[services[0]], sequence=4
    )
    assert pending.data == validated.model_dump(mode="json")
    assert (pending.subject, pending.sequence) == (subject(ci), 4)
    assert pending.payload == validated


def test_an_announcement_is_encoded_as_a_service_membership_event() -> None:
    ci = uuid.uuid4()
    encoded = encode_many([announcement(ci, [], [], 1)], tenant_id="acme", actor="system")
    assert encoded.types == ["itsm.config.service_membership.changed.v1"]
    assert encoded.subjects == [f"membership/{ci}"]
