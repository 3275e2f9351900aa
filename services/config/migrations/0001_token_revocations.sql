-- Tokens a tenant administrator revoked for their tenant. Each row is announced by an
-- itsm.auth.token.revoked.v1 event (outbox), which every service follows to refuse the token.
CREATE TABLE token_revocations (
    tenant_id  text        NOT NULL,
    token_id   text        NOT NULL,
    reason     text        NOT NULL CHECK (length(reason) BETWEEN 1 AND 500),
    revoked_at timestamptz NOT NULL,
    revoked_by text        NOT NULL,
    expires_at timestamptz,
    PRIMARY KEY (tenant_id, token_id)
);
CREATE INDEX token_revocations_listing ON token_revocations (tenant_id, revoked_at, token_id);

ALTER TABLE token_revocations ENABLE ROW LEVEL SECURITY;
ALTER TABLE token_revocations FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON token_revocations
    USING (tenant_id = current_setting('itsm.tenant_id', true));
