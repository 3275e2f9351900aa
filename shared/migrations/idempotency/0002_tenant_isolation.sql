-- Row-level security, forced even for the owning service role: a query sees only the rows of
-- the tenant named by the transaction's itsm.tenant_id setting. Platform jobs that serve every
-- tenant (relay, housekeeping) set itsm.all_tenants instead; see shared/db.py.
ALTER TABLE idempotency_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE idempotency_keys FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON idempotency_keys
    USING (
        tenant_id = current_setting('itsm.tenant_id', true)
        OR current_setting('itsm.all_tenants', true) = 'on'
    );
