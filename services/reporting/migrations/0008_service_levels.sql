-- Service level management (ISO/IEC 20000-1 8.3.3, 8.7.1, 9.2): availability per business
-- service, SLA performance per target, improvement actions and internal-audit findings.
--
-- The projections (`sl_*`) are built from the ledger by one background task
-- (services/reporting/application/service_levels.py), per tenant in log order, up to the
-- tenant's newest signed checkpoint: `sl_progress.applied_size` entries of the tenant's log are
-- in them, and `basis_size`/`basis_root` name the checkpoint they stand on. They can be emptied
-- and rebuilt from the ledger (`python -m services.reporting service-levels-rebuild`).
-- Improvement actions and audit findings are records of this service (not projections): each
-- change is a new version, kept in a history table, and announced through the outbox.

CREATE TABLE sl_progress (
    tenant_id    text        PRIMARY KEY,
    applied_size bigint      NOT NULL DEFAULT 0 CHECK (applied_size >= 0),
    basis_size   bigint      NOT NULL DEFAULT 0 CHECK (basis_size >= 0),
    basis_root   bytea,
    updated_at   timestamptz NOT NULL DEFAULT now()
);

-- The business services of the catalogue (config's BusinessServiceDefinedV1).
CREATE TABLE sl_services (
    tenant_id           text    NOT NULL,
    service_id          text    NOT NULL,
    name                text    NOT NULL,
    status              text    NOT NULL,
    criticality         integer NOT NULL,
    sla_policy          text,
    availability_target double precision,
    PRIMARY KEY (tenant_id, service_id)
);

-- SLA policies with their calendar (config's SlaPolicyDefinedV1). `objective` and
-- `availability_target` are read from the event when it carries them (additive fields).
CREATE TABLE sl_policies (
    tenant_id           text    NOT NULL,
    name                text    NOT NULL,
    calendar            jsonb   NOT NULL,
    services            text[]  NOT NULL DEFAULT '{}',
    is_default          boolean NOT NULL DEFAULT false,
    targets             text[]  NOT NULL DEFAULT '{}',
    objective           double precision,
    availability_target double precision,
    PRIMARY KEY (tenant_id, name)
);

-- Outages and degradations (incident's OutageRecordedV1 / OutageUpdatedV1), as they now stand:
-- one row per outage and service it names, so that a service's outages in a period are one
-- range of an index.
CREATE TABLE sl_outages (
    tenant_id   text        NOT NULL,
    outage_id   text        NOT NULL,
    service     text        NOT NULL,
    kind        text        NOT NULL CHECK (kind IN ('outage', 'degradation')),
    started_at  timestamptz NOT NULL,
    ended_at    timestamptz,
    incident_id text,
    withdrawn   boolean     NOT NULL DEFAULT false,
    PRIMARY KEY (tenant_id, outage_id, service)
);
CREATE INDEX sl_outages_service_time ON sl_outages (tenant_id, service, started_at);

-- Changes with a planned window (change's created/updated/authorized/transitioned events), the
-- business services and CIs they name.
-- `approved`: authorized (or scheduled) and neither voided nor cancelled since.
CREATE TABLE sl_changes (
    tenant_id     text        NOT NULL,
    change_id     text        NOT NULL,
    services      text[]      NOT NULL DEFAULT '{}',
    ci_ids        text[]      NOT NULL DEFAULT '{}',
    planned_start timestamptz,
    planned_end   timestamptz,
    approved      boolean     NOT NULL DEFAULT false,
    state         text        NOT NULL DEFAULT 'new',
    PRIMARY KEY (tenant_id, change_id)
);

-- The business services each CI supports (config's ServiceMembershipChangedV1): a change
-- naming CIs, not services, plans downtime of the services its CIs support.
CREATE TABLE sl_ci_services (
    tenant_id text   NOT NULL,
    ci_id     text   NOT NULL,
    services  text[] NOT NULL,
    PRIMARY KEY (tenant_id, ci_id)
);

-- Every SLA clock outcome and alert (incident's sla.clock_stopped / breached / warning_reached),
-- one row per ledger entry.
CREATE TABLE sl_clock_events (
    tenant_id  text        NOT NULL,
    leaf_index bigint      NOT NULL,
    policy     text        NOT NULL,
    target     text        NOT NULL,
    outcome    text        NOT NULL CHECK (outcome IN ('met', 'breached', 'breach', 'warning')),
    at         timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, leaf_index)
);
CREATE INDEX sl_clock_events_time ON sl_clock_events (tenant_id, at);

-- A tenant's service-level settings: the compliance objective of policies that name none, the
-- time zone its periods are cut in, and the period a missed target opens an action for.
CREATE TABLE sl_settings (
    tenant_id          text             PRIMARY KEY,
    sla_objective      double precision NOT NULL CHECK (sla_objective > 0 AND sla_objective <= 1),
    time_zone          text             NOT NULL,
    improvement_period text             NOT NULL CHECK (improvement_period IN ('day', 'week', 'month')),
    version            integer          NOT NULL,
    updated_at         timestamptz      NOT NULL,
    updated_by         text             NOT NULL
);

CREATE TABLE improvement_actions (
    id         uuid        PRIMARY KEY,
    tenant_id  text        NOT NULL,
    state      text        NOT NULL CHECK (state IN ('open', 'in_progress', 'done', 'cancelled')),
    version    integer     NOT NULL,
    created_at timestamptz NOT NULL,
    created_by text        NOT NULL,
    updated_at timestamptz NOT NULL,
    updated_by text        NOT NULL,
    title      text        NOT NULL,
    source     text        NOT NULL,
    service    text,
    policy     text,
    target     text,
    period     text,
    finding_id uuid,
    owner      text,
    due_date   date,
    outcome    text        NOT NULL DEFAULT '',
    -- What opened it automatically: one action per missed (policy, target, period) or
    -- (service, period); NULL for actions opened by a person or from a finding.
    auto_key   text
);
CREATE UNIQUE INDEX improvement_actions_auto ON improvement_actions (tenant_id, auto_key);
CREATE INDEX improvement_actions_list ON improvement_actions (tenant_id, created_at DESC, id DESC);

CREATE TABLE improvement_action_history (
    tenant_id text        NOT NULL,
    action_id uuid        NOT NULL,
    version   integer     NOT NULL,
    at        timestamptz NOT NULL,
    actor     text        NOT NULL,
    action    text        NOT NULL,
    changes   jsonb       NOT NULL,
    PRIMARY KEY (tenant_id, action_id, version)
);

CREATE TABLE audit_findings (
    id                uuid        PRIMARY KEY,
    tenant_id         text        NOT NULL,
    state             text        NOT NULL CHECK (state IN ('open', 'in_progress', 'closed')),
    version           integer     NOT NULL,
    created_at        timestamptz NOT NULL,
    created_by        text        NOT NULL,
    updated_at        timestamptz NOT NULL,
    updated_by        text        NOT NULL,
    audit             text        NOT NULL,
    clause            text        NOT NULL,
    finding           text        NOT NULL,
    severity          text        NOT NULL,
    owner             text,
    corrective_action text        NOT NULL DEFAULT '',
    due_date          date
);
CREATE INDEX audit_findings_list ON audit_findings (tenant_id, created_at DESC, id DESC);

CREATE TABLE audit_finding_history (
    tenant_id  text        NOT NULL,
    finding_id uuid        NOT NULL,
    version    integer     NOT NULL,
    at         timestamptz NOT NULL,
    actor      text        NOT NULL,
    action     text        NOT NULL,
    changes    jsonb       NOT NULL,
    PRIMARY KEY (tenant_id, finding_id, version)
);

-- Projections and progress: the projection task reads across tenants and a rebuild empties
-- them across tenants (an all-tenants transaction), like the completeness task's tables.
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['sl_progress', 'sl_services', 'sl_policies', 'sl_outages',
        'sl_changes', 'sl_ci_services', 'sl_clock_events'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format(
            'CREATE POLICY tenant_isolation ON %I USING ('
            'tenant_id = current_setting(''itsm.tenant_id'', true)'
            ' OR current_setting(''itsm.all_tenants'', true) = ''on'')', t);
    END LOOP;
END
$$;

-- Records (actions, findings, their history, the settings): one tenant at a time, as every
-- domain table; the platform only counts open and overdue actions (a read).
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['sl_settings', 'improvement_actions', 'improvement_action_history',
        'audit_findings', 'audit_finding_history'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format(
            'CREATE POLICY tenant_isolation ON %I USING ('
            'tenant_id = current_setting(''itsm.tenant_id'', true))', t);
    END LOOP;
END
$$;
CREATE POLICY all_tenants_read ON improvement_actions FOR SELECT
    USING (current_setting('itsm.all_tenants', true) = 'on');
