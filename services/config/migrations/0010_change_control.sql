-- Configuration items under change control (ISO/IEC 20000-1 8.2.6 with 8.5.1, issue 19).
-- The tenant's change-control configuration (the classes whose CIs are all under control;
-- a single CI is put under control by its own `controlled` flag), the config service's
-- projection of the change service's changes (state and affected CIs, to check a CI write's
-- `change_id`), and the change that authorised each CI version.
CREATE TABLE change_control (
    tenant_id  text        NOT NULL PRIMARY KEY,
    classes    text[]      NOT NULL,
    version    integer     NOT NULL CHECK (version >= 1),
    updated_at timestamptz NOT NULL,
    updated_by text        NOT NULL
);

CREATE TABLE change_projection (
    tenant_id    text        NOT NULL,
    change_id    uuid        NOT NULL,
    number       bigint      NOT NULL,
    state        text        NOT NULL,
    affected_cis uuid[]      NOT NULL DEFAULT '{}',
    -- The change's version (the events' itsmversion) the row reflects: an older event
    -- delivered again changes nothing.
    version      integer     NOT NULL,
    updated_at   timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, change_id)
);

ALTER TABLE ci_versions ADD COLUMN change_id uuid;

ALTER TABLE change_control ENABLE ROW LEVEL SECURITY;
ALTER TABLE change_control FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON change_control USING (tenant_id = current_setting('itsm.tenant_id', true));
ALTER TABLE change_projection ENABLE ROW LEVEL SECURITY;
ALTER TABLE change_projection FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON change_projection USING (tenant_id = current_setting('itsm.tenant_id', true));
