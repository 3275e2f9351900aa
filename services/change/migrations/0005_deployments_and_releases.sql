-- Deployment gate, tool integrations and releases (issue 19, gates; ISO/IEC 20000-1 8.5.3).
-- Row-level security on every table, forced for the owner, as in 0001.

-- Per-tenant gate settings: which environment names are production (a deployment there with
-- no change registers one) and the order a release is promoted through.
CREATE TABLE gate_settings (
    tenant_id               text        NOT NULL PRIMARY KEY,
    production_environments text[]      NOT NULL,
    release_environments    text[]      NOT NULL,
    updated_at              timestamptz NOT NULL,
    updated_by              text        NOT NULL
);

-- Per-tenant webhook secrets of the CI/CD tools (the signature is the webhook's only
-- authentication). `signature_header` is the header the operator configured (Argo CD).
CREATE TABLE integration_secrets (
    tenant_id        text        NOT NULL,
    tool             text        NOT NULL CHECK (tool IN ('github', 'argocd', 'flux')),
    secret           text        NOT NULL CHECK (length(secret) >= 16),
    signature_header text,
    updated_at       timestamptz NOT NULL,
    updated_by       text        NOT NULL,
    PRIMARY KEY (tenant_id, tool)
);

-- Webhook deliveries already handled (GitHub's X-GitHub-Delivery; a digest of the body for
-- the tools that send no delivery id): a redelivery is answered, not acted on twice.
CREATE TABLE webhook_deliveries (
    tenant_id     text        NOT NULL,
    tool          text        NOT NULL,
    delivery_id   text        NOT NULL,
    deployment_id uuid,
    received_at   timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, tool, delivery_id)
);

-- A deployment announced by a pipeline and the gate's decision: one per (pipeline,
-- environment, sequence), which makes announcing idempotent.
CREATE TABLE deployments (
    tenant_id    text        NOT NULL,
    id           uuid        NOT NULL,
    pipeline     text        NOT NULL,
    environment  text        NOT NULL,
    sequence     bigint      NOT NULL,
    source       text        NOT NULL CHECK (source IN ('api', 'github', 'argocd', 'flux')),
    services     text[]      NOT NULL DEFAULT '{}',
    ci_ids       uuid[]      NOT NULL DEFAULT '{}',
    artifacts    jsonb       NOT NULL,
    commit       text,
    change_id    uuid,
    release_id   uuid,
    registered   text CHECK (registered IN ('standard', 'unauthorized')),
    fingerprint  text        NOT NULL,
    decision     text        NOT NULL CHECK (decision IN ('allowed', 'prevented', 'awaiting')),
    reasons      jsonb       NOT NULL,
    decided_at   timestamptz NOT NULL,
    status       text        NOT NULL
        CHECK (status IN ('announced', 'succeeded', 'failed', 'rolled_back')),
    status_at    timestamptz,
    log_url      text,
    external     jsonb       NOT NULL DEFAULT '{}',
    version      integer     NOT NULL,
    created_at   timestamptz NOT NULL,
    created_by   text        NOT NULL,
    updated_at   timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, pipeline, environment, sequence)
);
CREATE INDEX deployments_change ON deployments (tenant_id, change_id, created_at)
    WHERE change_id IS NOT NULL;
CREATE INDEX deployments_release ON deployments (tenant_id, release_id, created_at)
    WHERE release_id IS NOT NULL;

-- Releases (REL<number>): changes and artifacts promoted through environments in order.
CREATE TABLE releases (
    tenant_id    text        NOT NULL,
    id           uuid        NOT NULL,
    number       bigint      NOT NULL,
    name         text        NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    state        text        NOT NULL CHECK (state IN ('planned', 'building', 'testing',
        'deploying', 'deployed', 'closed', 'failed', 'rolled_back', 'cancelled')),
    environments text[]      NOT NULL,
    changes      uuid[]      NOT NULL DEFAULT '{}',
    artifacts    jsonb       NOT NULL,
    evidence     jsonb       NOT NULL DEFAULT '[]',
    reason       text,
    version      integer     NOT NULL,
    created_at   timestamptz NOT NULL,
    created_by   text        NOT NULL,
    updated_at   timestamptz NOT NULL,
    updated_by   text        NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE UNIQUE INDEX releases_number ON releases (tenant_id, number);
CREATE INDEX releases_recent ON releases (tenant_id, created_at DESC, id DESC);

CREATE TABLE release_history (
    tenant_id  text        NOT NULL,
    release_id uuid        NOT NULL,
    version    integer     NOT NULL,
    at         timestamptz NOT NULL,
    actor      text        NOT NULL,
    action     text        NOT NULL,
    changes    jsonb       NOT NULL,
    PRIMARY KEY (tenant_id, release_id, version),
    FOREIGN KEY (tenant_id, release_id) REFERENCES releases (tenant_id, id)
);

-- A release's deployment to one environment: what was deployed (digests), how it went, the
-- evidence; a rollback is a row of its own.
CREATE TABLE release_deployments (
    tenant_id     text        NOT NULL,
    release_id    uuid        NOT NULL,
    seq           integer     NOT NULL,
    environment   text        NOT NULL,
    status        text        NOT NULL CHECK (status IN ('succeeded', 'failed', 'rolled_back')),
    digests       jsonb       NOT NULL,
    evidence      text[]      NOT NULL DEFAULT '{}',
    log_url       text,
    deployment_id uuid,
    at            timestamptz NOT NULL,
    actor         text        NOT NULL,
    PRIMARY KEY (tenant_id, release_id, seq),
    FOREIGN KEY (tenant_id, release_id) REFERENCES releases (tenant_id, id)
);

ALTER TABLE gate_settings ENABLE ROW LEVEL SECURITY;
ALTER TABLE gate_settings FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON gate_settings
    USING (tenant_id = current_setting('itsm.tenant_id', true));

ALTER TABLE integration_secrets ENABLE ROW LEVEL SECURITY;
ALTER TABLE integration_secrets FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON integration_secrets
    USING (tenant_id = current_setting('itsm.tenant_id', true));

ALTER TABLE webhook_deliveries ENABLE ROW LEVEL SECURITY;
ALTER TABLE webhook_deliveries FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON webhook_deliveries
    USING (tenant_id = current_setting('itsm.tenant_id', true));

ALTER TABLE deployments ENABLE ROW LEVEL SECURITY;
ALTER TABLE deployments FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON deployments
    USING (tenant_id = current_setting('itsm.tenant_id', true));

ALTER TABLE releases ENABLE ROW LEVEL SECURITY;
ALTER TABLE releases FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON releases
    USING (tenant_id = current_setting('itsm.tenant_id', true));

ALTER TABLE release_history ENABLE ROW LEVEL SECURITY;
ALTER TABLE release_history FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON release_history
    USING (tenant_id = current_setting('itsm.tenant_id', true));

ALTER TABLE release_deployments ENABLE ROW LEVEL SECURITY;
ALTER TABLE release_deployments FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON release_deployments
    USING (tenant_id = current_setting('itsm.tenant_id', true));
