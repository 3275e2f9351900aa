-- Calendar feed tokens: a secret URL (`/feeds/{tenant}/schedule/{secret}.ics`) per user and
-- calendar client, for clients that cannot send an Authorization header. Only the SHA-256 of
-- the secret is kept; the lookup runs in the tenant's own transaction (the tenant is in the
-- URL), so row-level security applies as everywhere. Revoked tokens stay, for the record.
CREATE TABLE schedule_feed_tokens (
    tenant_id    text        NOT NULL,
    id           uuid        NOT NULL,
    user_id      text        NOT NULL,
    name         text,
    service      text,
    ci_ids       text[]      NOT NULL DEFAULT '{}',
    secret_hash  bytea       NOT NULL CHECK (octet_length(secret_hash) = 32),
    created_at   timestamptz NOT NULL,
    last_used_at timestamptz,
    revoked_at   timestamptz,
    revoked_by   text,
    version      integer     NOT NULL DEFAULT 1,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, secret_hash)
);
CREATE INDEX schedule_feed_tokens_user ON schedule_feed_tokens (tenant_id, user_id, created_at)
    WHERE revoked_at IS NULL;

ALTER TABLE schedule_feed_tokens ENABLE ROW LEVEL SECURITY;
ALTER TABLE schedule_feed_tokens FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON schedule_feed_tokens
    USING (tenant_id = current_setting('itsm.tenant_id', true));
