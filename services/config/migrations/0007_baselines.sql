-- Configuration baselines (ISO/IEC 20000-1 8.2.6): a named instant of the CMDB. The state at
-- that instant is not copied: CI versions (ci_versions.valid_from) and relationship history
-- (added_at/removed_at) already hold it, so a baseline stores its instant and the counts seen
-- then. Baselines are immutable (a trigger refuses UPDATE).
CREATE TABLE baselines (
    tenant_id     text        NOT NULL,
    name          text        NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    description   text        NOT NULL DEFAULT '' CHECK (length(description) <= 2000),
    at            timestamptz NOT NULL,
    cis           integer     NOT NULL CHECK (cis >= 0),
    relationships integer     NOT NULL CHECK (relationships >= 0),
    created_at    timestamptz NOT NULL,
    created_by    text        NOT NULL,
    PRIMARY KEY (tenant_id, name)
);
CREATE INDEX baselines_listing ON baselines (tenant_id, at, name);

CREATE FUNCTION baselines_are_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'baselines are immutable' USING ERRCODE = 'object_not_in_prerequisite_state';
END
$$;
CREATE TRIGGER baselines_no_update BEFORE UPDATE ON baselines
    FOR EACH ROW EXECUTE FUNCTION baselines_are_immutable();

ALTER TABLE baselines ENABLE ROW LEVEL SECURITY;
ALTER TABLE baselines FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON baselines
    USING (tenant_id = current_setting('itsm.tenant_id', true));

-- Diffs between two instants look only at what happened in between.
CREATE INDEX ci_versions_window ON ci_versions (tenant_id, valid_from) INCLUDE (ci_id);
CREATE INDEX relationships_added_window ON relationships (tenant_id, added_at);
CREATE INDEX relationships_removed_window ON relationships (tenant_id, removed_at)
    WHERE removed_at IS NOT NULL;

-- GET /cis filters. cis_listing (0002) serves class [+ status]; these serve the others, each
-- ending in id so that a page in id order can come straight off the index.
CREATE INDEX cis_by_status ON cis (tenant_id, status, id);
CREATE INDEX cis_by_owner_team ON cis (tenant_id, owner_team, id);
CREATE INDEX cis_by_criticality ON cis (tenant_id, criticality, id);
-- Case-insensitive name prefix: a range over the lower-cased name in byte order (C collation).
-- A stored column rather than an index on lower(name): the tables force row-level security,
-- under which PostgreSQL uses an index only for quals built from leakproof functions, and
-- lower() is not one (text comparisons are).
ALTER TABLE cis ADD COLUMN name_folded text GENERATED ALWAYS AS (lower(name)) STORED;
CREATE INDEX cis_by_name_prefix ON cis (tenant_id, (name_folded COLLATE "C"), id);
-- Substring search (`q`) scans the tenant's names in id order, index-only, and stops at a full
-- page. Neither pg_trgm (superuser) nor a GIN index would help: no GIN operator is leakproof.
CREATE INDEX cis_names ON cis (tenant_id, id) INCLUDE (name_folded);
