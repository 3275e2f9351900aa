-- Row-level security, forced even for the owning service role: a query sees and writes only
-- the rows of the tenant named by the transaction's itsm.tenant_id setting, and nothing when
-- none is set. A query that forgets its tenant filter returns nothing, never another tenant's.
ALTER TABLE incidents ENABLE ROW LEVEL SECURITY;
ALTER TABLE incidents FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON incidents
    USING (tenant_id = current_setting('itsm.tenant_id', true));
