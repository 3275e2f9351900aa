-- Configuration items (ISO/IEC 20000-1 8.2.6): current state, every version, and the external
-- ids discovery sources know them by. Tenant-defined CI classes beside the built-in ones.
CREATE TABLE ci_classes (
    tenant_id        text        NOT NULL,
    name             text        NOT NULL,
    description      text        NOT NULL DEFAULT '',
    attribute_schema jsonb       NOT NULL,
    version          integer     NOT NULL,
    defined_at       timestamptz NOT NULL,
    defined_by       text        NOT NULL,
    PRIMARY KEY (tenant_id, name)
);

CREATE TABLE cis (
    tenant_id    text        NOT NULL,
    id           uuid        NOT NULL,
    class        text        NOT NULL,
    name         text        NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    status       text        NOT NULL CHECK (status IN ('planned', 'active', 'maintenance', 'retired')),
    owner_team   text,
    criticality  smallint    NOT NULL CHECK (criticality BETWEEN 1 AND 4),
    attributes   jsonb       NOT NULL,
    external_ids jsonb       NOT NULL,
    controlled   boolean     NOT NULL,
    version      integer     NOT NULL,
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL,
    updated_by   text        NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE UNIQUE INDEX cis_id ON cis (id);
CREATE INDEX cis_listing ON cis (tenant_id, class, status, id);

-- Each version as it was from valid_from until the next version's valid_from.
CREATE TABLE ci_versions (
    tenant_id  text        NOT NULL,
    ci_id      uuid        NOT NULL,
    version    integer     NOT NULL,
    valid_from timestamptz NOT NULL,
    state      jsonb       NOT NULL,
    changed    text[]      NOT NULL,
    actor      text        NOT NULL,
    reason     text,
    change_ref text,
    source     text,
    PRIMARY KEY (tenant_id, ci_id, version)
);
CREATE INDEX ci_versions_as_of ON ci_versions (tenant_id, ci_id, valid_from);

CREATE TABLE ci_external_ids (
    tenant_id   text NOT NULL,
    source      text NOT NULL,
    external_id text NOT NULL,
    ci_id       uuid NOT NULL,
    PRIMARY KEY (tenant_id, source, external_id)
);
CREATE INDEX ci_external_ids_ci ON ci_external_ids (tenant_id, ci_id);

ALTER TABLE ci_classes ENABLE ROW LEVEL SECURITY;
ALTER TABLE ci_classes FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON ci_classes USING (tenant_id = current_setting('itsm.tenant_id', true));
ALTER TABLE cis ENABLE ROW LEVEL SECURITY;
ALTER TABLE cis FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON cis USING (tenant_id = current_setting('itsm.tenant_id', true));
ALTER TABLE ci_versions ENABLE ROW LEVEL SECURITY;
ALTER TABLE ci_versions FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON ci_versions USING (tenant_id = current_setting('itsm.tenant_id', true));
ALTER TABLE ci_external_ids ENABLE ROW LEVEL SECURITY;
ALTER TABLE ci_external_ids FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON ci_external_ids USING (tenant_id = current_setting('itsm.tenant_id', true));
