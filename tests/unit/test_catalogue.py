import importlib

import pytest

from shared.events import catalogue
from shared.events.catalogue import (
    CATALOGUE,
    EventPayload,
    IncidentCreatedV1,
    event,
    spec_for,
    spec_of,
)
from shared.kafka import TOPICS


def test_every_catalogued_type_names_a_declared_topic_and_its_service():
    assert CATALOGUE, "the catalogue is empty"
    for spec in CATALOGUE.values():
        assert spec.topic in TOPICS
        assert spec.source == "itsm/" + spec.type.split(".")[1]


def test_a_payload_instance_leads_back_to_its_type():
    payload = IncidentCreatedV1(
        title="t", description="", impact=1, urgency=1, priority=1, state="new"
    )
    assert spec_of(payload).type == "itsm.incident.created.v1"
    assert spec_for("itsm.incident.created.v1").model is IncidentCreatedV1


def test_unknown_types_are_not_found():
    assert spec_for("itsm.nothing.happened.v1") is None


def test_registering_a_type_twice_is_refused():
    with pytest.raises(ValueError, match="twice"):
        event("itsm.incident.created.v1", topic="itsm.incident.events", source="itsm/incident")(
            type("Again", (EventPayload,), {})
        )


def test_type_names_must_be_versioned_and_namespaced():
    with pytest.raises(ValueError, match="itsm"):
        event("incident-created", topic="itsm.incident.events", source="itsm/incident")(
            type("Bad", (EventPayload,), {})
        )


def test_an_unregistered_payload_class_is_an_error():
    class Stray(EventPayload):
        pass

    with pytest.raises(LookupError):
        spec_of(Stray())


# Each domain's payloads live in a module of their own; the index re-exports them all.
DOMAIN_MODULES = {
    "shared.events.incident": "itsm.incident.events",
    "shared.events.change": "itsm.change.events",
    "shared.events.config": "itsm.config.events",
    "shared.events.auth": "itsm.auth.revocations",
    "shared.events.reporting": "itsm.reporting.events",
}


def test_each_domain_module_defines_the_payloads_of_its_own_topic_only():
    for module_name, topic in DOMAIN_MODULES.items():
        module = importlib.import_module(module_name)
        payloads = [
            value
            for value in vars(module).values()
            if isinstance(value, type)
            and issubclass(value, EventPayload)
            and value.__module__ == module_name
        ]
        assert payloads, f"{module_name} defines no payload"
        for model in payloads:
            spec = next(s for s in CATALOGUE.values() if s.model is model)
            assert spec.topic == topic, f"{model.__name__} is in {module_name}"


def test_every_catalogued_payload_comes_from_a_domain_module_and_the_index_exports_it():
    for spec in CATALOGUE.values():
        assert spec.model.__module__ in DOMAIN_MODULES, spec.type
        assert getattr(catalogue, spec.model.__name__) is spec.model
        assert spec.model.__name__ in catalogue.__all__
