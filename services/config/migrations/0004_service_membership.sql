-- The derived fact "which business services does this CI support": every business service that
-- depends on it, directly or through other CIs (retired CIs support nothing and pass nothing on).
-- Kept per CI so that a change is published only when the set really changes; `sequence` grows
-- with each published change. CIs that never supported a service have no row.
CREATE TABLE ci_service_membership (
    tenant_id  text        NOT NULL,
    ci_id      uuid        NOT NULL,
    services   uuid[]      NOT NULL,
    sequence   integer     NOT NULL,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, ci_id)
);
-- "Which CIs support service S" (the reverse projection).
CREATE INDEX ci_service_membership_services ON ci_service_membership USING gin (services);

ALTER TABLE ci_service_membership ENABLE ROW LEVEL SECURITY;
ALTER TABLE ci_service_membership FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON ci_service_membership
    USING (tenant_id = current_setting('itsm.tenant_id', true));
