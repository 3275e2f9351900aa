-- The CMDB graph projection (shared/cmdb/): what a service keeps of the config service's
-- events to know CIs, their typed relationships, business services and which services each CI
-- supports, without ever calling the config service. One migration set, applied in the schema
-- of every service that keeps the projection (shared/registry.py: `keeps_cmdb`), filled by one
-- consumer implementation (shared/cmdb/consumer.py), read by shared/cmdb/reads.py and walks.py.
-- Every row keeps the version (or sequence) of the event that wrote it; an older event that
-- arrives late changes nothing, so the tables are idempotent and tolerate any arrival order.
-- Ids are text, as the events carry them.

-- Configuration items (itsm.config.ci.created/updated/retired.v1): the latest state known.
CREATE TABLE cmdb_cis (
    tenant_id    text        NOT NULL,
    id           text        NOT NULL,
    ci_class     text        NOT NULL,
    name         text        NOT NULL,
    status       text        NOT NULL,
    owner_team   text,
    criticality  smallint    NOT NULL,
    external_ids jsonb       NOT NULL DEFAULT '{}',
    version      integer     NOT NULL,
    updated_at   timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
-- Alert intake names a CI by name (case-insensitively).
CREATE INDEX cmdb_cis_name ON cmdb_cis (tenant_id, lower(name));

-- A CI's external ids, one row per source, rewritten with the CI's row. Not unique: while
-- events of two CIs arrive out of order, an id can briefly sit on both; readers choose.
CREATE TABLE cmdb_ci_external_ids (
    tenant_id   text NOT NULL,
    ci_id       text NOT NULL,
    source      text NOT NULL,
    external_id text NOT NULL,
    PRIMARY KEY (tenant_id, ci_id, source)
);
CREATE INDEX cmdb_ci_external_ids_lookup
    ON cmdb_ci_external_ids (tenant_id, source, external_id);

-- Typed, directed relationships (itsm.config.relationship.added/removed.v1). A removed one
-- keeps its row (`removed`) so that its older "added" event, arriving late, changes nothing.
-- dependent_id/dependency_id normalise the direction as the config service does:
-- `a depends_on|runs_on|hosted_on|connects_to b` makes a depend on b; `a part_of|provides b`
-- makes b depend on a. Walks go upstream (to dependents) or downstream (to dependencies).
CREATE TABLE cmdb_relationships (
    tenant_id     text    NOT NULL,
    id            text    NOT NULL,
    type          text    NOT NULL,
    source_id     text    NOT NULL,
    target_id     text    NOT NULL,
    dependent_id  text    GENERATED ALWAYS AS (
        CASE WHEN type IN ('part_of', 'provides') THEN target_id ELSE source_id END) STORED,
    dependency_id text    GENERATED ALWAYS AS (
        CASE WHEN type IN ('part_of', 'provides') THEN source_id ELSE target_id END) STORED,
    removed       boolean NOT NULL,
    version       integer NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX cmdb_relationships_upstream
    ON cmdb_relationships (tenant_id, dependency_id) INCLUDE (dependent_id, type)
    WHERE NOT removed;
CREATE INDEX cmdb_relationships_downstream
    ON cmdb_relationships (tenant_id, dependent_id) INCLUDE (dependency_id, type)
    WHERE NOT removed;

-- CI -> the business services it supports (itsm.config.service_membership.changed.v1), with
-- the per-CI sequence of the last change applied.
CREATE TABLE cmdb_ci_services (
    tenant_id text    NOT NULL,
    ci_id     text    NOT NULL,
    services  text[]  NOT NULL,
    sequence  integer NOT NULL,
    PRIMARY KEY (tenant_id, ci_id)
);

-- Business services (itsm.config.business_service.defined.v1).
CREATE TABLE cmdb_business_services (
    tenant_id           text             NOT NULL,
    id                  text             NOT NULL,
    name                text             NOT NULL,
    status              text             NOT NULL,
    criticality         smallint         NOT NULL,
    owner               text,
    customer            text,
    availability_target double precision,
    sla_policy          text,
    version             integer          NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX cmdb_business_services_name ON cmdb_business_services (tenant_id, lower(name));

-- Row-level security, forced even for the owning service role, as on every table: a query
-- sees and writes only the rows of the tenant named by itsm.tenant_id, none without.
ALTER TABLE cmdb_cis ENABLE ROW LEVEL SECURITY;
ALTER TABLE cmdb_cis FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON cmdb_cis
    USING (tenant_id = current_setting('itsm.tenant_id', true));

ALTER TABLE cmdb_ci_external_ids ENABLE ROW LEVEL SECURITY;
ALTER TABLE cmdb_ci_external_ids FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON cmdb_ci_external_ids
    USING (tenant_id = current_setting('itsm.tenant_id', true));

ALTER TABLE cmdb_relationships ENABLE ROW LEVEL SECURITY;
ALTER TABLE cmdb_relationships FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON cmdb_relationships
    USING (tenant_id = current_setting('itsm.tenant_id', true));

ALTER TABLE cmdb_ci_services ENABLE ROW LEVEL SECURITY;
ALTER TABLE cmdb_ci_services FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON cmdb_ci_services
    USING (tenant_id = current_setting('itsm.tenant_id', true));

ALTER TABLE cmdb_business_services ENABLE ROW LEVEL SECURITY;
ALTER TABLE cmdb_business_services FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON cmdb_business_services
    USING (tenant_id = current_setting('itsm.tenant_id', true));
