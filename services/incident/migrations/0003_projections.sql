-- The incident service's own projection of the config service's events (rule 1: it never
-- calls the config service). Filled by the `incident-config-projection` consumer
-- (services/incident/entrypoints/consumers.py), read by services/incident/adapters/projections.py.
-- Every row keeps the version (or sequence) of the event that wrote it; an older event that
-- arrives late changes nothing, so the tables are idempotent and tolerate any arrival order.
-- Ids are text, as the events carry them.

-- Configuration items (itsm.config.ci.created/updated/retired.v1): the latest state known.
CREATE TABLE proj_cis (
    tenant_id    text        NOT NULL,
    id           text        NOT NULL,
    ci_class     text        NOT NULL,
    name         text        NOT NULL,
    status       text        NOT NULL,
    owner_team   text,
    criticality  smallint    NOT NULL,
    external_ids jsonb       NOT NULL DEFAULT '{}',
    version      integer     NOT NULL,
    updated_at   timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
-- Alert intake: a label names a CI (case-insensitively).
CREATE INDEX proj_cis_name ON proj_cis (tenant_id, lower(name));

-- A CI's external ids, one row per source, kept with the CI's version: lookup by
-- (source, external id). Not unique: while events of two CIs arrive out of order, an id can
-- briefly sit on both; readers choose deterministically.
CREATE TABLE proj_ci_external_ids (
    tenant_id   text NOT NULL,
    ci_id       text NOT NULL,
    source      text NOT NULL,
    external_id text NOT NULL,
    PRIMARY KEY (tenant_id, ci_id, source)
);
CREATE INDEX proj_ci_external_ids_lookup ON proj_ci_external_ids (tenant_id, source, external_id);

-- CI -> the business services it supports (itsm.config.service_membership.changed.v1),
-- with the per-CI sequence of the last change applied.
CREATE TABLE proj_ci_services (
    tenant_id text    NOT NULL,
    ci_id     text    NOT NULL,
    services  text[]  NOT NULL,
    sequence  integer NOT NULL,
    PRIMARY KEY (tenant_id, ci_id)
);

-- Business services (itsm.config.business_service.defined.v1).
CREATE TABLE proj_business_services (
    tenant_id           text             NOT NULL,
    id                  text             NOT NULL,
    name                text             NOT NULL,
    status              text             NOT NULL,
    criticality         smallint         NOT NULL,
    owner               text,
    customer            text,
    availability_target double precision,
    sla_policy          text,
    version             integer          NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX proj_business_services_name ON proj_business_services (tenant_id, lower(name));

-- Business-hours calendars (itsm.config.calendar.defined.v1). SLA policies embed theirs.
CREATE TABLE proj_calendars (
    tenant_id   text    NOT NULL,
    name        text    NOT NULL,
    description text    NOT NULL,
    spec        jsonb   NOT NULL,
    version     integer NOT NULL,
    PRIMARY KEY (tenant_id, name)
);

-- SLA policies (itsm.config.sla_policy.defined.v1), each with its calendar in full.
-- `targets`: {"P1": {"response_seconds": .., "resolution_seconds": ..}, .., "P5": ..}.
-- `defined_at`: the time of the event that wrote the row (chooses between two defaults while
-- a move of the default flag is still arriving).
CREATE TABLE proj_sla_policies (
    tenant_id         text             NOT NULL,
    name              text             NOT NULL,
    description       text             NOT NULL,
    targets           jsonb            NOT NULL,
    calendar_name     text             NOT NULL,
    calendar          jsonb            NOT NULL,
    pause_on          text[]           NOT NULL,
    warning_threshold double precision NOT NULL,
    services          text[]           NOT NULL,
    is_default        boolean          NOT NULL,
    version           integer          NOT NULL,
    defined_at        timestamptz      NOT NULL,
    PRIMARY KEY (tenant_id, name)
);
CREATE INDEX proj_sla_policies_services ON proj_sla_policies USING gin (services);
CREATE INDEX proj_sla_policies_default ON proj_sla_policies (tenant_id) WHERE is_default;

-- Row-level security, forced even for the owning service role, as on every table here: a
-- query sees and writes only the rows of the tenant named by itsm.tenant_id, none without.
ALTER TABLE proj_cis ENABLE ROW LEVEL SECURITY;
ALTER TABLE proj_cis FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON proj_cis
    USING (tenant_id = current_setting('itsm.tenant_id', true));

ALTER TABLE proj_ci_external_ids ENABLE ROW LEVEL SECURITY;
ALTER TABLE proj_ci_external_ids FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON proj_ci_external_ids
    USING (tenant_id = current_setting('itsm.tenant_id', true));

ALTER TABLE proj_ci_services ENABLE ROW LEVEL SECURITY;
ALTER TABLE proj_ci_services FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON proj_ci_services
    USING (tenant_id = current_setting('itsm.tenant_id', true));

ALTER TABLE proj_business_services ENABLE ROW LEVEL SECURITY;
ALTER TABLE proj_business_services FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON proj_business_services
    USING (tenant_id = current_setting('itsm.tenant_id', true));

ALTER TABLE proj_calendars ENABLE ROW LEVEL SECURITY;
ALTER TABLE proj_calendars FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON proj_calendars
    USING (tenant_id = current_setting('itsm.tenant_id', true));

ALTER TABLE proj_sla_policies ENABLE ROW LEVEL SECURITY;
ALTER TABLE proj_sla_policies FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON proj_sla_policies
    USING (tenant_id = current_setting('itsm.tenant_id', true));
