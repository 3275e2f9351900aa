-- Service reports (services/reporting/README.md "Service reports"): report definitions per
-- tenant (versioned, written with If-Match), and the reports generated from them, kept with
-- every format and its SHA-256. A report row is also its generation job: any replica takes a
-- queued report (or one whose worker's lease ran out) and builds it.
CREATE TABLE report_definitions (
    id              uuid        PRIMARY KEY,
    tenant_id       text        NOT NULL,
    version         integer     NOT NULL CHECK (version >= 1),
    name            text        NOT NULL,
    audience        text        NOT NULL,
    services        text[]      NOT NULL,
    period_kind     text        NOT NULL CHECK (period_kind IN ('day', 'week', 'month')),
    -- [{"id": kpi id, "target": number or null}] in the order the report shows them
    kpis            jsonb       NOT NULL,
    trend_periods   integer     NOT NULL CHECK (trend_periods BETWEEN 0 AND 36),
    schedule        text        NOT NULL CHECK (schedule IN ('none', 'daily', 'weekly', 'monthly')),
    schedule_time   time        NOT NULL,
    time_zone       text        NOT NULL,
    formats         text[]      NOT NULL,
    deleted         boolean     NOT NULL DEFAULT false,
    created_at      timestamptz NOT NULL,
    created_by      text        NOT NULL,
    updated_at      timestamptz NOT NULL,
    updated_by      text        NOT NULL
);
CREATE INDEX report_definitions_list ON report_definitions (tenant_id, created_at, id);
CREATE INDEX report_definitions_scheduled ON report_definitions (tenant_id)
    WHERE schedule <> 'none' AND NOT deleted;

CREATE TABLE reports (
    id                  uuid        PRIMARY KEY,
    tenant_id           text        NOT NULL,
    kind                text        NOT NULL CHECK (kind IN ('service_report', 'management_review')),
    definition_id       uuid        REFERENCES report_definitions (id),
    definition_version  integer,
    -- the definition as it stood when the report was asked for (a later edit does not change it)
    spec                jsonb       NOT NULL,
    period_kind         text        NOT NULL CHECK (period_kind IN ('day', 'week', 'month')),
    period_start        date        NOT NULL,
    period_label        text        NOT NULL,
    period_from         timestamptz NOT NULL,
    period_to           timestamptz NOT NULL CHECK (period_to > period_from),
    trigger             text        NOT NULL CHECK (trigger IN ('schedule', 'on_demand')),
    requested_by        text        NOT NULL,
    state               text        NOT NULL DEFAULT 'queued'
        CHECK (state IN ('queued', 'running', 'done', 'failed')),
    steps_done          integer     NOT NULL DEFAULT 0,
    steps_total         integer     NOT NULL DEFAULT 0,
    lease_until         timestamptz,
    attempts            integer     NOT NULL DEFAULT 0,
    error               text,
    -- the checkpoint the figures were computed from (KpiReader.basis)
    tree_size           bigint,
    root_hash           text,
    created_at          timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at         timestamptz
);
-- A scheduled report is made once per (definition, period), whichever replica gets there first.
CREATE UNIQUE INDEX reports_once_per_period
    ON reports (tenant_id, definition_id, period_kind, period_start) WHERE trigger = 'schedule';
CREATE INDEX reports_list ON reports (tenant_id, created_at, id);
CREATE INDEX reports_to_do ON reports (created_at) WHERE state IN ('queued', 'running');

CREATE TABLE report_files (
    report_id   uuid    NOT NULL REFERENCES reports (id),
    tenant_id   text    NOT NULL,
    format      text    NOT NULL CHECK (format IN ('json', 'csv', 'html', 'pdf')),
    media_type  text    NOT NULL,
    content     bytea   NOT NULL,
    sha256      text    NOT NULL,
    PRIMARY KEY (report_id, format)
);

ALTER TABLE report_definitions ENABLE ROW LEVEL SECURITY;
ALTER TABLE report_definitions FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON report_definitions
    USING (tenant_id = current_setting('itsm.tenant_id', true));
-- The scheduler looks for scheduled definitions across tenants, then works in each tenant.
CREATE POLICY all_tenants_read ON report_definitions FOR SELECT
    USING (current_setting('itsm.all_tenants', true) = 'on');

ALTER TABLE reports ENABLE ROW LEVEL SECURITY;
ALTER TABLE reports FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON reports
    USING (tenant_id = current_setting('itsm.tenant_id', true));
CREATE POLICY all_tenants_read ON reports FOR SELECT
    USING (current_setting('itsm.all_tenants', true) = 'on');

ALTER TABLE report_files ENABLE ROW LEVEL SECURITY;
ALTER TABLE report_files FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON report_files
    USING (tenant_id = current_setting('itsm.tenant_id', true));
