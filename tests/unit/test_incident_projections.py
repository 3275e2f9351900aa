"""The incident service's config projection consumer: which events it takes, which it skips."""

from types import SimpleNamespace

from services.incident.adapters.projections import _latest
from services.incident.definition import DEFINITION
from services.incident.entrypoints.consumers import (
    CHANGE_CORRELATION_CONSUMER,
    CONFIG_PROJECTION_CONSUMER,
    HANDLERS,
    config_projection_consumer,
)
from shared.events.catalogue import CATALOGUE, CONFIG_EVENTS

WANTED = {
    "itsm.config.ci.created.v1",
    "itsm.config.ci.updated.v1",
    "itsm.config.ci.retired.v1",
    "itsm.config.service_membership.changed.v1",
    "itsm.config.business_service.defined.v1",
    "itsm.config.calendar.defined.v1",
    "itsm.config.sla_policy.defined.v1",
}


def consumer():
    runtime = SimpleNamespace(
        pool=None,
        producer=None,
        metrics=None,
        settings=SimpleNamespace(consumer_max_records=100),
    )
    return config_projection_consumer(runtime)


def test_every_handled_type_is_a_catalogued_config_event():
    assert set(HANDLERS) == WANTED
    for type_name in HANDLERS:
        assert CATALOGUE[type_name].topic == CONFIG_EVENTS


def test_the_consumer_reads_the_config_topic_in_its_own_group():
    projection = consumer()
    assert (projection.name, projection.topics) == (CONFIG_PROJECTION_CONSUMER, (CONFIG_EVENTS,))
    assert projection.bulk_handler is not None


def test_other_config_event_types_have_no_handler_and_are_skipped():
    projection = consumer()
    others = [t for t, spec in CATALOGUE.items() if spec.topic == CONFIG_EVENTS and t not in WANTED]
    assert others  # relationships, CI classes, drift, imports, baselines
    for type_name in others:
        assert projection.handler_for(type_name) is None
    for type_name in WANTED:
        assert projection.handler_for(type_name) is not None


def test_the_incident_service_runs_the_projection_and_change_correlation_consumers():
    runtime = SimpleNamespace(
        pool=None,
        producer=None,
        metrics=None,
        service_metrics=None,
        settings=SimpleNamespace(consumer_max_records=1),
    )
    assert [c.name for c in DEFINITION.consumers(runtime)] == [
        CONFIG_PROJECTION_CONSUMER,
        CHANGE_CORRELATION_CONSUMER,
    ]


def test_a_batch_keeps_the_highest_version_of_each_aggregate():
    items = [("a", 1), ("b", 2), ("a", 3), ("a", 2), ("b", 2)]
    assert _latest(items, key=lambda i: i[0], number=lambda i: i[1]) == [("a", 3), ("b", 2)]
