-- Service catalogue and service level management (ISO/IEC 20000-1 8.3.3): business-hours
-- calendars shared by SLA policies, the policies with their targets and covered business
-- services, every version of both (auditors sample them), and the announcement counter of
-- each business service (the sequence of its business_service.defined events).
CREATE TABLE calendars (
    tenant_id   text        NOT NULL,
    name        text        NOT NULL,
    description text        NOT NULL DEFAULT '',
    spec        jsonb       NOT NULL,
    version     integer     NOT NULL CHECK (version >= 1),
    updated_at  timestamptz NOT NULL,
    updated_by  text        NOT NULL,
    PRIMARY KEY (tenant_id, name)
);

-- `definition` is what was defined: {"description", "calendar"}.
CREATE TABLE calendar_versions (
    tenant_id  text        NOT NULL,
    name       text        NOT NULL,
    version    integer     NOT NULL,
    defined_at timestamptz NOT NULL,
    actor      text        NOT NULL,
    definition jsonb       NOT NULL,
    PRIMARY KEY (tenant_id, name, version)
);

CREATE TABLE sla_policies (
    tenant_id         text             NOT NULL,
    name              text             NOT NULL,
    description       text             NOT NULL DEFAULT '',
    calendar          text             NOT NULL,
    targets           jsonb            NOT NULL,  -- {"P1": {"response_minutes", "resolution_minutes"}, ...}
    pause_on          text[]           NOT NULL,
    warning_threshold double precision NOT NULL CHECK (warning_threshold > 0 AND warning_threshold < 1),
    services          uuid[]           NOT NULL,  -- as listed; sla_policy_services enforces coverage
    is_default        boolean          NOT NULL,
    version           integer          NOT NULL CHECK (version >= 1),
    updated_at        timestamptz      NOT NULL,
    updated_by        text             NOT NULL,
    PRIMARY KEY (tenant_id, name),
    FOREIGN KEY (tenant_id, calendar) REFERENCES calendars (tenant_id, name)
);
CREATE INDEX sla_policies_calendar ON sla_policies (tenant_id, calendar);
-- At most one default policy per tenant.
CREATE UNIQUE INDEX sla_policies_one_default ON sla_policies (tenant_id) WHERE is_default;

-- A business service is covered by at most one policy (the primary key says so).
CREATE TABLE sla_policy_services (
    tenant_id  text NOT NULL,
    service_id uuid NOT NULL,
    policy     text NOT NULL,
    PRIMARY KEY (tenant_id, service_id),
    FOREIGN KEY (tenant_id, policy) REFERENCES sla_policies (tenant_id, name),
    FOREIGN KEY (tenant_id, service_id) REFERENCES cis (tenant_id, id)
);
CREATE INDEX sla_policy_services_policy ON sla_policy_services (tenant_id, policy);

-- `definition` is the policy as defined (targets in minutes); `calendar` the calendar spec it
-- used at that version. `cause`: `defined` (a PUT) or `calendar_redefined` (republished).
CREATE TABLE sla_policy_versions (
    tenant_id        text        NOT NULL,
    name             text        NOT NULL,
    version          integer     NOT NULL,
    defined_at       timestamptz NOT NULL,
    actor            text        NOT NULL,
    cause            text        NOT NULL CHECK (cause IN ('defined', 'calendar_redefined')),
    definition       jsonb       NOT NULL,
    calendar_version integer     NOT NULL,
    calendar         jsonb       NOT NULL,
    PRIMARY KEY (tenant_id, name, version)
);

CREATE TABLE business_service_announcements (
    tenant_id  text    NOT NULL,
    service_id uuid    NOT NULL,
    sequence   integer NOT NULL CHECK (sequence >= 1),
    PRIMARY KEY (tenant_id, service_id)
);

ALTER TABLE calendars ENABLE ROW LEVEL SECURITY;
ALTER TABLE calendars FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON calendars USING (tenant_id = current_setting('itsm.tenant_id', true));
ALTER TABLE calendar_versions ENABLE ROW LEVEL SECURITY;
ALTER TABLE calendar_versions FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON calendar_versions USING (tenant_id = current_setting('itsm.tenant_id', true));
ALTER TABLE sla_policies ENABLE ROW LEVEL SECURITY;
ALTER TABLE sla_policies FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON sla_policies USING (tenant_id = current_setting('itsm.tenant_id', true));
ALTER TABLE sla_policy_services ENABLE ROW LEVEL SECURITY;
ALTER TABLE sla_policy_services FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON sla_policy_services USING (tenant_id = current_setting('itsm.tenant_id', true));
ALTER TABLE sla_policy_versions ENABLE ROW LEVEL SECURITY;
ALTER TABLE sla_policy_versions FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON sla_policy_versions USING (tenant_id = current_setting('itsm.tenant_id', true));
ALTER TABLE business_service_announcements ENABLE ROW LEVEL SECURITY;
ALTER TABLE business_service_announcements FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON business_service_announcements USING (tenant_id = current_setting('itsm.tenant_id', true));
