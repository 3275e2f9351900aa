-- Incident management (ISO/IEC 20000-1 8.6.1): the full record, its history, work notes,
-- per-tenant numbering and the tenant's incident settings.

ALTER TABLE incidents
    ADD COLUMN number            bigint,
    ADD COLUMN caller            text,
    ADD COLUMN category          text,
    ADD COLUMN ci_id             uuid,
    ADD COLUMN services          text[]      NOT NULL DEFAULT '{}',
    ADD COLUMN sla_policy        text,
    ADD COLUMN assignment_group  text,
    ADD COLUMN assignee          text,
    ADD COLUMN major             boolean     NOT NULL DEFAULT false,
    ADD COLUMN major_flagged     boolean     NOT NULL DEFAULT false,
    ADD COLUMN major_owner       text,
    ADD COLUMN major_review      jsonb,
    ADD COLUMN parent_id         uuid,
    ADD COLUMN problem_id        uuid,
    ADD COLUMN suspected_change  text,
    ADD COLUMN hold_reason       text,
    ADD COLUMN resolution_code   text,
    ADD COLUMN resolution_notes  text,
    ADD COLUMN origin            text        NOT NULL DEFAULT 'manual',
    ADD COLUMN workaround        text,
    ADD COLUMN known_error_id    uuid,
    ADD COLUMN updated_at        timestamptz,
    ADD COLUMN updated_by        text,
    ADD COLUMN resolved_at       timestamptz,
    ADD COLUMN closed_at         timestamptz;

UPDATE incidents SET updated_at = created_at, updated_by = created_by WHERE updated_at IS NULL;
ALTER TABLE incidents ALTER COLUMN updated_at SET NOT NULL, ALTER COLUMN updated_by SET NOT NULL;

ALTER TABLE incidents ADD CONSTRAINT incidents_state CHECK (
    state IN ('new', 'in_progress', 'on_hold', 'resolved', 'closed', 'cancelled'));
ALTER TABLE incidents ADD CONSTRAINT incidents_hold_reason CHECK (
    (state = 'on_hold') = (hold_reason IS NOT NULL));

-- Lists: newest first within a tenant, and the usual filters.
CREATE INDEX incidents_recent ON incidents (tenant_id, created_at DESC, id DESC);
CREATE INDEX incidents_open ON incidents (tenant_id, state, priority)
    WHERE state NOT IN ('closed', 'cancelled');
CREATE INDEX incidents_ci ON incidents (tenant_id, ci_id, created_at DESC) WHERE ci_id IS NOT NULL;
CREATE INDEX incidents_services ON incidents USING gin (services);
CREATE INDEX incidents_assignee ON incidents (tenant_id, assignee) WHERE assignee IS NOT NULL;
CREATE INDEX incidents_group ON incidents (tenant_id, assignment_group)
    WHERE assignment_group IS NOT NULL;
CREATE INDEX incidents_resolved ON incidents (tenant_id, resolved_at) WHERE state = 'resolved';
CREATE UNIQUE INDEX incidents_number ON incidents (tenant_id, number) WHERE number IS NOT NULL;

-- Every version of an incident: who changed what, when, and why (the audit trail).
CREATE TABLE incident_history (
    tenant_id   text        NOT NULL,
    incident_id uuid        NOT NULL,
    version     integer     NOT NULL,
    at          timestamptz NOT NULL,
    actor       text        NOT NULL,
    action      text        NOT NULL,
    changes     jsonb       NOT NULL,
    PRIMARY KEY (tenant_id, incident_id, version),
    FOREIGN KEY (tenant_id, incident_id) REFERENCES incidents (tenant_id, id)
);

CREATE TABLE work_notes (
    tenant_id   text        NOT NULL,
    incident_id uuid        NOT NULL,
    id          bigint      GENERATED ALWAYS AS IDENTITY,
    at          timestamptz NOT NULL,
    author      text        NOT NULL,
    note        text        NOT NULL CHECK (length(note) BETWEEN 1 AND 20000),
    PRIMARY KEY (tenant_id, incident_id, id),
    FOREIGN KEY (tenant_id, incident_id) REFERENCES incidents (tenant_id, id)
);

-- Per-tenant record numbers (INC42, REQ7, PRB3), gap-free per kind.
CREATE TABLE record_numbers (
    tenant_id text   NOT NULL,
    kind      text   NOT NULL,
    last      bigint NOT NULL,
    PRIMARY KEY (tenant_id, kind)
);

-- The tenant's incident settings; a tenant without a row uses the defaults.
CREATE TABLE incident_settings (
    tenant_id        text        PRIMARY KEY,
    priority_matrix  jsonb,
    auto_close_days  integer     NOT NULL DEFAULT 7 CHECK (auto_close_days BETWEEN 1 AND 365),
    alert_mapping    jsonb,
    trend_threshold  integer     NOT NULL DEFAULT 3 CHECK (trend_threshold BETWEEN 2 AND 1000),
    trend_window_seconds integer NOT NULL DEFAULT 86400 CHECK (trend_window_seconds > 0),
    trend_opens_problem  boolean NOT NULL DEFAULT false,
    change_window_seconds integer NOT NULL DEFAULT 86400 CHECK (change_window_seconds > 0),
    version          integer     NOT NULL DEFAULT 1,
    updated_at       timestamptz NOT NULL,
    updated_by       text        NOT NULL
);

ALTER TABLE incident_history ENABLE ROW LEVEL SECURITY;
ALTER TABLE incident_history FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON incident_history
    USING (tenant_id = current_setting('itsm.tenant_id', true));

ALTER TABLE work_notes ENABLE ROW LEVEL SECURITY;
ALTER TABLE work_notes FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON work_notes
    USING (tenant_id = current_setting('itsm.tenant_id', true));

ALTER TABLE record_numbers ENABLE ROW LEVEL SECURITY;
ALTER TABLE record_numbers FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON record_numbers
    USING (tenant_id = current_setting('itsm.tenant_id', true));

ALTER TABLE incident_settings ENABLE ROW LEVEL SECURITY;
ALTER TABLE incident_settings FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON incident_settings
    USING (tenant_id = current_setting('itsm.tenant_id', true));
