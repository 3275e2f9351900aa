-- Customer-satisfaction surveys (ISO/IEC 20000-1 9.1) and outage records (8.7.1).
--
-- A survey is offered once per resolved incident or fulfilled request; its link's token is
-- signed with the service's survey key and is stored nowhere (the row is what a valid token
-- points at: tenant, record and expiry). The answer is kept on the row: one answer, ever.
CREATE TABLE surveys (
    tenant_id        text        NOT NULL,
    record           text        NOT NULL CHECK (record IN ('incident', 'request')),
    record_id        uuid        NOT NULL,
    caller           text,
    services         text[]      NOT NULL DEFAULT '{}',
    assignment_group text,
    assignee         text,
    sent_at          timestamptz NOT NULL,
    expires_at       timestamptz NOT NULL,
    score            smallint    CHECK (score BETWEEN 1 AND 5),
    comment          text,
    answered_at      timestamptz,
    PRIMARY KEY (tenant_id, record, record_id),
    CHECK ((score IS NULL) = (answered_at IS NULL))
);
CREATE INDEX surveys_by_sent ON surveys (tenant_id, sent_at DESC, record_id DESC);

ALTER TABLE surveys ENABLE ROW LEVEL SECURITY;
ALTER TABLE surveys FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON surveys
    USING (tenant_id = current_setting('itsm.tenant_id', true));

-- Outages and degradations of business services, on a major incident or recorded directly.
-- `version` is the outage's event version (recorded: 1, each update: +1).
CREATE TABLE outages (
    tenant_id        text        NOT NULL,
    id               uuid        NOT NULL,
    services         text[]      NOT NULL CHECK (cardinality(services) > 0),
    kind             text        NOT NULL CHECK (kind IN ('outage', 'degradation')),
    start_at         timestamptz NOT NULL,
    end_at           timestamptz CHECK (end_at IS NULL OR end_at >= start_at),
    incident_id      uuid,
    summary          text        NOT NULL DEFAULT '',
    withdrawn        boolean     NOT NULL DEFAULT false,
    withdrawn_reason text        NOT NULL DEFAULT '',
    version          integer     NOT NULL,
    created_at       timestamptz NOT NULL,
    created_by       text        NOT NULL,
    updated_at       timestamptz NOT NULL,
    updated_by       text        NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX outages_by_start ON outages (tenant_id, start_at DESC, id DESC);
CREATE INDEX outages_open_by_incident ON outages (tenant_id, incident_id)
    WHERE end_at IS NULL AND NOT withdrawn;

ALTER TABLE outages ENABLE ROW LEVEL SECURITY;
ALTER TABLE outages FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON outages
    USING (tenant_id = current_setting('itsm.tenant_id', true));

-- The tenant's survey settings beside its other incident settings.
ALTER TABLE incident_settings
    ADD COLUMN surveys_enabled boolean NOT NULL DEFAULT true,
    ADD COLUMN survey_days     integer NOT NULL DEFAULT 14 CHECK (survey_days BETWEEN 1 AND 90);
