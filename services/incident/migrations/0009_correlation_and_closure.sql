-- Change correlation, automatic closure and the open-incident census.

-- Changes the change service reported implemented, per CI (from `itsm.change.implemented.v1`):
-- an incident on the CI within the tenant's window after `implemented_at` is flagged.
CREATE TABLE change_implementations (
    tenant_id      text        NOT NULL,
    change_id      text        NOT NULL CHECK (length(change_id) BETWEEN 1 AND 200),
    ci_id          uuid        NOT NULL,
    implemented_at timestamptz NOT NULL,
    title          text        NOT NULL,
    outcome        text        NOT NULL,
    recorded_at    timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, change_id, ci_id)
);
CREATE INDEX change_implementations_ci
    ON change_implementations (tenant_id, ci_id, implemented_at DESC);

ALTER TABLE change_implementations ENABLE ROW LEVEL SECURITY;
ALTER TABLE change_implementations FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON change_implementations
    USING (tenant_id = current_setting('itsm.tenant_id', true));

-- Resolved incidents waiting to close automatically: only ids and a due time, so that the
-- closing job can find every tenant's due incidents (shared/db.py all_tenants_transaction)
-- while `incidents` itself stays visible to one tenant at a time. The job re-reads each
-- incident and the tenant's current `auto_close_days` under that tenant before closing it.
CREATE TABLE auto_close_queue (
    tenant_id   text        NOT NULL,
    incident_id uuid        NOT NULL,
    due_at      timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, incident_id),
    FOREIGN KEY (tenant_id, incident_id) REFERENCES incidents (tenant_id, id)
);
CREATE INDEX auto_close_queue_due ON auto_close_queue (due_at);

ALTER TABLE auto_close_queue ENABLE ROW LEVEL SECURITY;
ALTER TABLE auto_close_queue FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON auto_close_queue
    USING (tenant_id = current_setting('itsm.tenant_id', true));
-- The job reads and claims (SELECT ... FOR UPDATE) due entries of every tenant; it postpones
-- or removes an entry only after switching to the entry's tenant.
CREATE POLICY all_tenants_read ON auto_close_queue FOR SELECT
    USING (current_setting('itsm.all_tenants', true) = 'on');
CREATE POLICY all_tenants_claim ON auto_close_queue FOR UPDATE
    USING (current_setting('itsm.all_tenants', true) = 'on')
    WITH CHECK (current_setting('itsm.all_tenants', true) = 'on');

-- The census of open incidents (the itsm_incident_open gauge) visits each tenant that has
-- ever numbered an incident; it reads the tenants (not the counters' use) across tenants.
CREATE POLICY all_tenants_read ON record_numbers FOR SELECT
    USING (current_setting('itsm.all_tenants', true) = 'on');
