"""The change records' metrics on the real stack: changes raised, moves, outcomes and lead
time counted after commit, and the census gauge of changes by type and state."""

import pytest

from services.change.application.census import refresh
from tests.integration.test_change_records import approve, moved, raise_change
from tests.support import sample_value


@pytest.fixture
async def api(service_client, tenant):
    # The census reads the tenant's own series: an operator's opt-in (METRICS_TENANTS).
    return await service_client("change", metrics_tenants=tenant)


async def test_raising_moving_and_implementing_a_change_are_counted_and_the_census_sees_it(
    api, auth, pools, tenant
):
    registry = api.runtime.registry
    manager = auth(tenant, "change_manager")

    def value(name, **labels):
        return sample_value(registry, name, labels) or 0

    created = value("itsm_changes_created_total", type="normal", origin="manual")
    to_review = value("itsm_change_transitions_total", type="normal", to_state="review")
    failed = value("itsm_change_outcomes_total", type="normal", outcome="failed")
    lead = value("itsm_change_lead_time_seconds_count", type="normal")

    change = await raise_change(api, manager)
    other = await raise_change(api, manager)
    change = await moved(api, manager, change, "assess")
    change = await moved(api, manager, change, "authorize")
    await approve(pools, tenant, change["id"])
    change = (await api.get(f"/changes/{change['id']}", headers=manager)).json()
    change = await moved(api, manager, change, "implement")
    await moved(api, manager, change, "review", outcome="failed", outcome_reason="it broke")

    assert value("itsm_changes_created_total", type="normal", origin="manual") == created + 2
    assert value("itsm_change_transitions_total", type="normal", to_state="review") == (
        to_review + 1
    )
    assert value("itsm_change_outcomes_total", type="normal", outcome="failed") == failed + 1
    assert value("itsm_change_lead_time_seconds_count", type="normal") == lead + 1

    runtime = api.runtime
    await refresh(runtime.pool, runtime.service_metrics, runtime.metrics.tenant)
    assert value("itsm_changes", type="normal", state="review", tenant=tenant) == 1
    assert value("itsm_changes", type="normal", state="new", tenant=tenant) == 1
    assert other["state"] == "new"
