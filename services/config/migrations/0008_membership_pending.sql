-- CIs whose service membership must be recomputed: bulk writers (imports) mark them in the
-- same transaction as their changes and settle them once at the end (one walk instead of one
-- per batch). A crash in between leaves the marks; the service's sweeper settles them.
CREATE TABLE membership_pending (
    tenant_id text NOT NULL,
    ci_id     uuid NOT NULL,
    PRIMARY KEY (tenant_id, ci_id)
);

ALTER TABLE membership_pending ENABLE ROW LEVEL SECURITY;
ALTER TABLE membership_pending FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON membership_pending
    USING (tenant_id = current_setting('itsm.tenant_id', true));
-- The sweeper finds the tenants with marks (ids only; it settles them tenant by tenant).
CREATE POLICY all_tenants_read ON membership_pending FOR SELECT
    USING (current_setting('itsm.all_tenants', true) = 'on');
