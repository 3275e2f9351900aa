"""The deployment gate's decision table (with fakes of `GateChecks`), the tools' signature
checks (GitHub's published example), the real checks' reading of the approvals and the
schedule, and the catalogue's template match."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from services.change.application import deployments
from services.change.application.deployments import (
    Gate,
    StandardChangeCatalogue,
    decide_for,
)
from services.change.domain import change as changes
from services.change.domain.deployments import (
    Announcement,
    Artifact,
    ScheduleFinding,
    check_artifacts,
    check_status_move,
)
from services.change.domain.signatures import hmac_sha256, valid_hmac, valid_token
from shared.errors import InvalidTransition, ValidationFailed

NOW = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)
CI = uuid.uuid4()


class FakeChecks:
    """What cab's approvals and schedule's conflicts would answer."""

    def __init__(self, authorization="approved", findings=()):
        self.status = authorization
        self.found = list(findings)
        self.asked: list[uuid.UUID] = []

    async def authorization(self, uow, change):
        self.asked.append(change.id)
        return self.status

    async def findings(self, uow, change):
        return self.found


class FakeChanges:
    def __init__(self, *found):
        self.found = {c.id: c for c in found}

    async def get(self, change_id, *, lock=False):
        return self.found.get(change_id)


class FakeUow:
    def __init__(self, *found):
        self.changes = FakeChanges(*found)
        self.tenant_id = "t-1"


def a_change(state="scheduled", *, start=NOW - timedelta(hours=1), end=NOW + timedelta(hours=1)):
    change, _ = changes.open_change(
        tenant_id="t-1",
        number=1,
        type="normal",
        title="Upgrade",
        description="",
        justification="",
        requester="carol",
        actor="carol",
        now=NOW - timedelta(days=1),
        planned_start=start,
        planned_end=end,
        affected_cis=(CI,),
        business_services=("payroll",),
    )
    from dataclasses import replace

    return replace(change, state=state)


def announce(change=None, **fields):
    given = {
        "ci_ids": (CI,),
        "services": ("payroll",),
        "change_id": change.id if change else None,
        **fields,
    }
    return Announcement(pipeline="p", environment="production", sequence=1, **given)


async def decision(change, checks, *, announcement=None, production=True, now=NOW):
    gate = Gate(checks, StandardChangeCatalogue())
    uow = FakeUow(*([change] if change else []))
    wanted = announcement or announce(change)
    return await decide_for(gate, uow, wanted, wanted.change_id, production=production, now=now)


async def test_an_approved_change_in_its_window_on_its_cis_is_allowed():
    change = a_change()
    checks = FakeChecks("approved")
    found = await decision(change, checks)
    assert (found.result, found.reasons) == ("allowed", ())
    assert checks.asked == [change.id]


@pytest.mark.parametrize(
    ("authorization", "state", "result", "codes"),
    [
        ("pending", "authorize", "awaiting", ["awaiting_approval"]),
        ("pending", "scheduled", "awaiting", ["awaiting_approval"]),
        ("rejected", "assess", "prevented", ["not_approved"]),
        ("approved", "closed", "prevented", ["not_approved"]),
        ("approved", "cancelled", "prevented", ["not_approved"]),
        ("not_required", "scheduled", "allowed", []),
        ("approved", "implement", "allowed", []),
    ],
)
async def test_the_authorization_and_state_decide(authorization, state, result, codes):
    found = await decision(a_change(state), FakeChecks(authorization))
    assert found.result == result
    assert [r.code for r in found.reasons] == codes


async def test_a_blackout_is_prevented_naming_every_ci_it_covers():
    cis = tuple(str(uuid.uuid4()) for _ in range(80))
    blackout = ScheduleFinding("blackout", "year-end freeze", cis)
    clash = ScheduleFinding("change", "CHG9 on the same CI", (str(CI),))
    found = await decision(a_change(), FakeChecks("approved", [blackout, clash]))
    assert found.result == "prevented"
    assert [(r.code, len(r.ci_ids)) for r in found.reasons] == [("blackout", 80), ("conflict", 1)]


async def test_outside_the_window_is_prevented_before_and_after_it():
    for now in (NOW - timedelta(hours=2), NOW + timedelta(hours=1)):
        found = await decision(a_change(), FakeChecks(), now=now)
        assert [r.code for r in found.reasons] == ["outside_window"]


async def test_a_scheduled_change_with_no_window_is_prevented():
    change = a_change(start=None, end=None)
    found = await decision(change, FakeChecks())
    assert [r.code for r in found.reasons] == ["outside_window"]


async def test_cis_and_services_the_change_does_not_cover_are_all_named():
    change = a_change()
    others = (uuid.uuid4(), uuid.uuid4())
    wanted = announce(change, ci_ids=(CI, *others), services=("payroll", "billing"))
    found = await decision(change, FakeChecks(), announcement=wanted)
    assert found.result == "prevented"
    (reason,) = found.reasons
    assert reason.code == "wrong_cis"
    assert reason.ci_ids == tuple(str(o) for o in others)
    assert "billing" in reason.detail


async def test_every_reason_is_given_and_prevention_outranks_waiting():
    change = a_change("authorize")
    wanted = announce(change, ci_ids=(uuid.uuid4(),))
    found = await decision(
        change, FakeChecks("pending"), announcement=wanted, now=NOW + timedelta(hours=3)
    )
    assert found.result == "prevented"
    assert [r.code for r in found.reasons] == ["wrong_cis", "outside_window", "awaiting_approval"]


async def test_a_change_named_but_missing_is_prevented():
    wanted = announce(None, change_id=uuid.uuid4())
    found = await decision(None, FakeChecks(), announcement=wanted)
    assert [r.code for r in found.reasons] == ["change_not_found"]


async def test_an_unauthorized_change_registered_by_a_deployment_is_prevented():
    from dataclasses import replace

    change = replace(a_change("new"), origin="unauthorized")
    found = await decision(change, FakeChecks("pending"))
    assert found.result == "prevented"
    assert [r.code for r in found.reasons] == ["unauthorized", "awaiting_approval"]


async def test_outside_production_a_deployment_without_a_change_is_allowed():
    wanted = announce(None)
    found = await decision(None, FakeChecks(), announcement=wanted, production=False)
    assert found.result == "allowed"


def test_a_production_deployment_is_never_decided_without_a_change():
    from services.change.domain.deployments import decide

    with pytest.raises(ValueError, match="against a change"):
        decide(announce(None), None, production=True, now=NOW)


def test_an_artifact_digest_must_be_sha256_hex():
    check_artifacts([Artifact("a", "1", "sha256:" + "0" * 64)])
    with pytest.raises(ValidationFailed) as refused:
        check_artifacts([Artifact("a", "1", "sha256:" + "0" * 64), Artifact("b", "1", "sha256:XY")])
    assert [f.field for f in refused.value.fields] == ["artifacts[1].digest"]


def test_the_same_key_announced_with_other_content_has_another_fingerprint():
    one = announce(None, artifacts=(Artifact("a", "1", "sha256:" + "0" * 64),))
    same = announce(None, artifacts=(Artifact("a", "1", "sha256:" + "0" * 64),))
    other = announce(None, artifacts=(Artifact("a", "1", "sha256:" + "1" * 64),))
    assert one.fingerprint == same.fingerprint != other.fingerprint


def test_an_outcome_is_recorded_once_then_only_rolled_back():
    check_status_move("announced", "succeeded")
    check_status_move("succeeded", "rolled_back")
    with pytest.raises(InvalidTransition) as refused:
        check_status_move("succeeded", "failed")
    assert refused.value.allowed == ("rolled_back",)
    with pytest.raises(InvalidTransition):
        check_status_move("rolled_back", "succeeded")


# GitHub's documentation ("Validating webhook deliveries") gives this example: the secret
# "It's a Secret to Everybody" and the payload "Hello, World!" sign as below.
GITHUB_SECRET = "It's a Secret to Everybody"
GITHUB_PAYLOAD = b"Hello, World!"
GITHUB_SIGNATURE = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"


def test_githubs_published_signature_example_verifies():
    assert hmac_sha256(GITHUB_SECRET, GITHUB_PAYLOAD) == GITHUB_SIGNATURE
    assert valid_hmac(GITHUB_SECRET, GITHUB_PAYLOAD, GITHUB_SIGNATURE)


@pytest.mark.parametrize(
    ("secret", "payload", "header"),
    [
        ("It's a Secret to Everybody!", GITHUB_PAYLOAD, GITHUB_SIGNATURE),
        (GITHUB_SECRET, b"Hello, World?", GITHUB_SIGNATURE),
        (GITHUB_SECRET, GITHUB_PAYLOAD, GITHUB_SIGNATURE.replace("sha256=", "sha1=")),
        (GITHUB_SECRET, GITHUB_PAYLOAD, GITHUB_SIGNATURE[:-1]),
        (GITHUB_SECRET, GITHUB_PAYLOAD, ""),
        (GITHUB_SECRET, GITHUB_PAYLOAD, None),
    ],
)
def test_any_other_secret_body_or_signature_does_not_verify(secret, payload, header):
    assert not valid_hmac(secret, payload, header)


def test_argocds_header_carries_the_secret_itself():
    assert valid_token("s" * 20, "s" * 20)
    assert not valid_token("s" * 20, "s" * 19)
    assert not valid_token("s" * 20, None)


async def test_the_collaborators_answers_are_read_as_the_fixed_interfaces_give_them(monkeypatch):
    """approvals.authorization(uow, change).status and schedule.conflicts(uow, change), with
    kind, detail and every CI, as change-common fixes them."""
    from dataclasses import dataclass

    from services.change.application.deployments import CollaboratorGateChecks

    @dataclass
    class Authorization:
        status: str

    @dataclass
    class ScheduleConflict:
        kind: str
        detail: str
        ci_ids: list[uuid.UUID]

    cis = [uuid.uuid4() for _ in range(3)]

    async def authorization(uow, change):
        return Authorization("rejected")

    async def conflicts(uow, change, *, hops=1):
        return [ScheduleConflict("blackout", "freeze", cis)]

    monkeypatch.setattr(deployments.approvals, "authorization", authorization)
    monkeypatch.setattr(deployments.schedule, "conflicts", conflicts)
    checks = CollaboratorGateChecks()
    found = await decision(a_change(), checks)
    assert found.result == "prevented"
    assert [(r.code, r.ci_ids) for r in found.reasons] == [
        ("not_approved", ()),
        ("blackout", tuple(str(c) for c in cis)),
    ]


async def test_a_production_deployment_matches_the_active_template_of_its_service_or_ci():
    from services.change.domain.records import Template
    from tests.unit.fakes_change_rfc import FakeTemplates

    ci = uuid.uuid4()
    templates = FakeTemplates()
    for name, service, cis, active in (
        ("Restart payroll", "payroll", (), True),
        ("Patch the db host", None, (ci,), True),
        ("Retired payroll", "payroll", (), False),
    ):
        t = Template(uuid.uuid4(), name, "", "plan", "backout", "", cis, (), service, active=active)
        templates.rows[t.id] = t

    class Uow:
        pass

    uow = Uow()
    uow.templates = templates  # type: ignore[attr-defined]
    catalogue = StandardChangeCatalogue()
    by_service = await catalogue.matching(uow, ["payroll"], [])  # type: ignore[arg-type]
    assert by_service is not None and by_service.title == "Restart payroll"
    assert (by_service.implementation_plan, by_service.risk_level) == ("plan", "low")
    by_ci = await catalogue.matching(uow, ["billing"], [ci])  # type: ignore[arg-type]
    assert by_ci is not None and by_ci.title == "Patch the db host"
    assert await catalogue.matching(uow, ["billing"], [uuid.uuid4()]) is None  # type: ignore[arg-type]
