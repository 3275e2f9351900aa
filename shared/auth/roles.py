"""The role matrix: which roles may do what. The one place to read or change it."""

from __future__ import annotations

from types import MappingProxyType

ROLES = frozenset(
    {
        "requester",
        "agent",
        "problem_manager",
        "change_manager",
        "cab_member",
        "config_manager",
        "auditor",
        "tenant_admin",
        "integration",
        "provider_admin",
    }
)

_READERS = frozenset(
    {"agent", "problem_manager", "change_manager", "auditor", "tenant_admin", "provider_admin"}
)

# permission -> roles allowed. Endpoints name a permission, never a role.
PERMISSIONS: MappingProxyType[str, frozenset[str]] = MappingProxyType(
    {
        "incident:create": frozenset(
            {
                "requester",
                "agent",
                "problem_manager",
                "integration",
                "tenant_admin",
                "provider_admin",
            }
        ),
        "incident:read": _READERS | {"requester", "integration"},
        # Work an incident: fields, moves, notes, major-incident review.
        "incident:update": frozenset(
            {"agent", "problem_manager", "integration", "tenant_admin", "provider_admin"}
        ),
        # The tenant's incident settings: priority matrix, auto-close, alert mapping, trends.
        "incident:configure": frozenset({"tenant_admin", "provider_admin"}),
        # Monitoring tools opening, updating and resolving incidents from alerts.
        "alert:ingest": frozenset({"integration"}),
        # Service requests: submit and follow one's own; fulfil; approve (never one's own).
        "request:submit": frozenset(
            {"requester", "agent", "integration", "tenant_admin", "provider_admin"}
        ),
        "request:read": _READERS | {"requester", "integration"},
        "request:fulfil": frozenset({"agent", "tenant_admin", "provider_admin"}),
        "request:approve": frozenset({"agent", "change_manager", "tenant_admin", "provider_admin"}),
        # Problems: raise one and link incidents; root cause, known errors and change requests.
        "problem:read": _READERS,
        "problem:create": frozenset({"agent", "problem_manager", "tenant_admin", "provider_admin"}),
        "problem:manage": frozenset({"problem_manager", "tenant_admin", "provider_admin"}),
        # Satisfaction survey results (answers come in by the survey link's token, no role).
        "survey:read": _READERS,
        # Outages of business services (availability, 8.7.1): those who work major incidents
        # record them; monitoring tools may too.
        "outage:read": _READERS | {"integration"},
        "outage:record": frozenset(
            {"agent", "problem_manager", "integration", "tenant_admin", "provider_admin"}
        ),
        "ledger:read": frozenset({"auditor", "tenant_admin", "provider_admin"}),
        # Sign a checkpoint of the tenant's verifiable log now (besides the interval's).
        "ledger:checkpoint": frozenset({"auditor", "tenant_admin", "provider_admin"}),
        # Evidence exports (archives per ISO 20000 clause) and auditor samples of records.
        "evidence:export": frozenset({"auditor", "tenant_admin", "provider_admin"}),
        # Service reports (9.4) and the management review (9.3): read them; define and make them.
        "report:read": _READERS,
        "report:manage": frozenset({"tenant_admin", "provider_admin"}),
        # KPIs of every process (reporting): process managers, auditors and admins; not agents,
        # since the figures show each colleague's workload.
        "kpi:read": frozenset(
            {
                "problem_manager",
                "change_manager",
                "config_manager",
                "auditor",
                "tenant_admin",
                "provider_admin",
            }
        ),
        "token:revoke": frozenset({"tenant_admin", "provider_admin"}),
        "ci:read": _READERS | {"cab_member", "config_manager", "integration"},
        "ci:write": frozenset({"config_manager", "integration", "tenant_admin", "provider_admin"}),
        "ci_class:define": frozenset({"tenant_admin", "provider_admin"}),
        "token:read": frozenset({"tenant_admin", "provider_admin", "auditor"}),
        # Calendars and SLA policies: the service catalogue side of service level management.
        "catalogue:define": frozenset({"config_manager", "tenant_admin", "provider_admin"}),
        "baseline:create": frozenset({"config_manager", "tenant_admin", "provider_admin"}),
        # Which CI classes are under change control (the config service's change control).
        "change_control:define": frozenset(
            {"change_manager", "config_manager", "tenant_admin", "provider_admin"}
        ),
        # Changes (8.5.1): requesters raise them; change managers edit, move and review them;
        # change managers and admins define the standard change catalogue and the settings.
        "change:read": _READERS | {"requester", "cab_member", "integration"},
        "change:create": frozenset(
            {
                "requester",
                "agent",
                "problem_manager",
                "change_manager",
                "integration",
                "tenant_admin",
                "provider_admin",
            }
        ),
        "change:manage": frozenset({"change_manager", "tenant_admin", "provider_admin"}),
        "change:configure": frozenset({"change_manager", "tenant_admin", "provider_admin"}),
        # --- risk and approvals of changes (cab) ---
        # Read risk assessments, the risk rule set and the approval policies.
        "risk:read": _READERS | {"cab_member", "integration"},
        "risk:assess": frozenset({"change_manager", "tenant_admin", "provider_admin"}),
        # The tenant's risk rule set and approval policies (decision table, groups).
        "change_policy:configure": frozenset({"tenant_admin", "provider_admin"}),
        # A change's approvals and CAB meetings with their agenda.
        "approval:read": _READERS | {"cab_member", "requester", "integration"},
        # Decide on approval steps (only as an approver the step names) and see one's queue.
        "approval:decide": frozenset(
            {"agent", "change_manager", "cab_member", "tenant_admin", "provider_admin"}
        ),
        "cab:schedule": frozenset({"change_manager", "tenant_admin", "provider_admin"}),
        # The change schedule (schedule): windows are the change manager's; everyone who takes
        # part in changes reads the schedule, its conflicts and its feed.
        "change_window:manage": frozenset({"change_manager", "tenant_admin", "provider_admin"}),
        "schedule:read": _READERS | {"requester", "cab_member", "integration"},
        # --- deployment gate and releases (change service, gates) ---
        # Pipelines announce deployments to the gate and record their outcomes.
        "deployment:announce": frozenset({"integration", "tenant_admin", "provider_admin"}),
        "deployment:read": _READERS | {"cab_member", "integration"},
        # The gate's production environments and release order; the tools' webhook secrets.
        "integration:configure": frozenset({"tenant_admin", "provider_admin"}),
        "release:read": _READERS | {"cab_member", "integration"},
        "release:manage": frozenset(
            {"change_manager", "integration", "tenant_admin", "provider_admin"}
        ),
        # --- service level management (reporting): availability, SLA results, actions ---
        "service_level:read": _READERS,
        # The tenant's objective, time zone and period for service-level figures.
        "service_level:configure": frozenset({"tenant_admin", "provider_admin"}),
        # Improvement actions: open by hand, assign, progress, close with the outcome.
        "improvement:manage": frozenset(
            {"problem_manager", "change_manager", "tenant_admin", "provider_admin"}
        ),
        # Internal-audit findings (9.2): the auditor records them and follows them up.
        "audit_finding:manage": frozenset({"auditor", "tenant_admin", "provider_admin"}),
    }
)


def allowed(permission: str, roles: frozenset[str]) -> bool:
    """Whether any of the roles grants the permission (an unknown permission grants nothing)."""
    return bool(PERMISSIONS.get(permission, frozenset()) & roles)


# The order the role matrix in SECURITY.md shows the roles in (least to most trusted).
ROLE_ORDER: tuple[str, ...] = (
    "requester",
    "agent",
    "problem_manager",
    "change_manager",
    "cab_member",
    "config_manager",
    "auditor",
    "tenant_admin",
    "integration",
    "provider_admin",
)


def matrix_markdown() -> str:
    """The role matrix as SECURITY.md shows it: a row per permission, a column per role."""
    assert set(ROLE_ORDER) == ROLES, "ROLE_ORDER must list every role once"
    lines = [
        "| permission | " + " | ".join(f"`{role}`" for role in ROLE_ORDER) + " |",
        "|---" * (len(ROLE_ORDER) + 1) + "|",
    ]
    for permission in sorted(PERMISSIONS):
        granted = PERMISSIONS[permission]
        cells = ["yes" if role in granted else "—" for role in ROLE_ORDER]
        lines.append(f"| `{permission}` | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(matrix_markdown(), end="")
