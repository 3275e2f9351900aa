"""Consumers subscribe by catalogue class or to whole topics; the topics follow the classes."""

import pytest

from services.reporting.entrypoints.consumers import LEDGER_CONSUMER, ledger_consumer
from shared.events.catalogue import (
    AUTH_REVOCATIONS,
    CATALOGUE,
    CHANGE_EVENTS,
    CONFIG_EVENTS,
    INCIDENT_EVENTS,
    REPORTING_EVENTS,
    CiCreatedV1,
    EventPayload,
    IncidentCreatedV1,
    spec_of_class,
)
from shared.inbox import EventConsumer
from tests.unit.test_incident_projections import runtime


async def nothing(conn, events):
    return None


def consumer(**subscription):
    return EventConsumer(
        name="test", handler=nothing, pool=None, producer=None, metrics=None, **subscription
    )


def test_subscribing_by_class_reads_the_classes_topics_and_applies_only_their_types():
    by_class = consumer(handles=(CiCreatedV1, IncidentCreatedV1, CiCreatedV1))
    assert by_class.topics == (CONFIG_EVENTS, INCIDENT_EVENTS)
    assert by_class.types == {"itsm.config.ci.created.v1", "itsm.incident.created.v1"}
    assert by_class.handles_type("itsm.config.ci.created.v1")
    assert not by_class.handles_type("itsm.config.ci.updated.v1")


def test_subscribing_to_a_whole_topic_applies_every_type_on_it():
    whole = consumer(topics=(INCIDENT_EVENTS,))
    assert (whole.topics, whole.types) == ((INCIDENT_EVENTS,), None)
    assert all(whole.handles_type(t) for t, s in CATALOGUE.items() if s.topic == INCIDENT_EVENTS)


def test_a_consumer_names_either_classes_or_topics():
    with pytest.raises(ValueError, match="either"):
        consumer()
    with pytest.raises(ValueError, match="either"):
        consumer(handles=(CiCreatedV1,), topics=(CONFIG_EVENTS,))


def test_a_class_outside_the_catalogue_cannot_be_subscribed_to():
    class Unregistered(EventPayload):
        pass

    with pytest.raises(LookupError, match="Unregistered"):
        consumer(handles=(Unregistered,))
    assert spec_of_class(CiCreatedV1).type == "itsm.config.ci.created.v1"


def test_the_ledger_records_every_event_of_every_topic_with_one_write():
    ledger = ledger_consumer(runtime())
    assert ledger.name == LEDGER_CONSUMER
    assert ledger.topics == (
        INCIDENT_EVENTS,
        CHANGE_EVENTS,
        CONFIG_EVENTS,
        REPORTING_EVENTS,
        AUTH_REVOCATIONS,
    )
    assert ledger.types is None
    assert ledger.handler.__name__ == "append_many"
