"""The incident service's consumers of the config and change topics: which events each takes,
which they skip; and the CMDB projection kept where the registry says."""

import uuid
from datetime import UTC, datetime
from types import SimpleNamespace

from services.incident.definition import DEFINITION
from services.incident.entrypoints.consumers import (
    CHANGE_CORRELATION_CONSUMER,
    CMDB_PROJECTION_CONSUMER,
    CONFIG_PROJECTION_CONSUMER,
    PROBLEM_CHANGES_CONSUMER,
    config_projection_consumer,
)
from shared.cmdb.consumer import HANDLES, consumer_name
from shared.cmdb.writes import latest
from shared.events.catalogue import (
    CATALOGUE,
    CHANGE_EVENTS,
    CONFIG_EVENTS,
    ChangeImplementedV1,
    CiCreatedV1,
    CiStateV1,
    CiUpdatedV1,
)
from shared.registry import SERVICES
from tests.conftest import DEFINITIONS

CMDB_TYPES = {
    "itsm.config.ci.created.v1",
    "itsm.config.ci.updated.v1",
    "itsm.config.ci.retired.v1",
    "itsm.config.relationship.added.v1",
    "itsm.config.relationship.removed.v1",
    "itsm.config.service_membership.changed.v1",
    "itsm.config.business_service.defined.v1",
}
SLA_TYPES = {"itsm.config.calendar.defined.v1", "itsm.config.sla_policy.defined.v1"}


def runtime(max_records=100):
    return SimpleNamespace(
        pool=None,
        producer=None,
        metrics=None,
        service_metrics=None,
        settings=SimpleNamespace(consumer_max_records=max_records),
    )


def by_name():
    return {c.name: c for c in DEFINITION.consumers(runtime())}


def test_the_incident_service_runs_the_cmdb_sla_change_correlation_and_problem_consumers():
    assert list(by_name()) == [
        CMDB_PROJECTION_CONSUMER,
        CONFIG_PROJECTION_CONSUMER,
        CHANGE_CORRELATION_CONSUMER,
        PROBLEM_CHANGES_CONSUMER,
    ]
    assert CMDB_PROJECTION_CONSUMER == "incident-cmdb-projection"


def test_the_cmdb_consumer_takes_cis_relationships_membership_and_business_services():
    cmdb = by_name()[CMDB_PROJECTION_CONSUMER]
    assert (cmdb.topics, cmdb.types) == ((CONFIG_EVENTS,), CMDB_TYPES)
    assert {CATALOGUE[t].model for t in CMDB_TYPES} == set(HANDLES)


def test_the_sla_consumer_keeps_calendars_and_policies_in_its_old_consumer_group():
    sla = config_projection_consumer(runtime())
    assert (sla.name, sla.topics, sla.types) == (
        "incident-config-projection",
        (CONFIG_EVENTS,),
        SLA_TYPES,
    )


def test_other_config_event_types_are_skipped_by_both():
    consumers = by_name()
    others = [
        t
        for t, spec in CATALOGUE.items()
        if spec.topic == CONFIG_EVENTS and t not in CMDB_TYPES | SLA_TYPES
    ]
    assert others  # CI classes, drift, imports, baselines
    for name in (CMDB_PROJECTION_CONSUMER, CONFIG_PROJECTION_CONSUMER):
        assert not any(consumers[name].handles_type(t) for t in others)


def test_the_change_correlation_consumer_takes_implemented_changes_and_ci_writes_under_one():
    correlation = by_name()[CHANGE_CORRELATION_CONSUMER]
    assert correlation.types == {
        "itsm.change.implemented.v1",
        "itsm.config.ci.created.v1",
        "itsm.config.ci.updated.v1",
        "itsm.config.ci.retired.v1",
    }
    assert correlation.topics == (CHANGE_EVENTS, CONFIG_EVENTS)
    ci = CiStateV1(
        id=str(uuid.uuid4()),
        ci_class="database",
        name="orders-db",
        status="active",
        owner_team=None,
        criticality=2,
        attributes={},
        external_ids={},
        controlled=True,
        version=2,
        updated_at=datetime.now(UTC),
        updated_by="ivan",
    )
    change_id = str(uuid.uuid4())
    # A CI written under a change is taken; one written without (an import, say) is skipped.
    assert correlation.accepts(CiUpdatedV1(ci=ci, changed=["attributes"], change_id=change_id))
    assert not correlation.accepts(CiUpdatedV1(ci=ci, changed=["attributes"]))
    assert not correlation.accepts(CiCreatedV1(ci=ci, source="vcenter"))
    assert correlation.accepts(
        ChangeImplementedV1(
            change_id=change_id, title="t", ci_ids=[ci.id], implemented_at=datetime.now(UTC)
        )
    )


def test_a_service_keeps_the_cmdb_projection_exactly_when_the_registry_says_so():
    for registered in SERVICES:
        definition = DEFINITIONS[registered.name]
        names = [c.name for c in definition.consumers(runtime())]
        keeps = "cmdb" in definition.shared_components
        assert keeps == registered.keeps_cmdb, registered.name
        assert (consumer_name(registered.name) in names) == registered.keeps_cmdb, names
    assert [s.name for s in SERVICES if s.keeps_cmdb] == ["incident", "change"]


def test_a_batch_keeps_the_highest_version_of_each_aggregate():
    items = [("a", 1), ("b", 2), ("a", 3), ("a", 2), ("b", 2)]
    assert latest(items, key=lambda i: i[0], number=lambda i: i[1]) == [("a", 3), ("b", 2)]
