-- Typed, directed relationships between CIs, with history: a removed relationship keeps its
-- row (removed_at/by). dependent_id/dependency_id normalise the direction for impact analysis:
-- `a depends_on|runs_on|hosted_on|connects_to b` makes a depend on b; `a part_of|provides b`
-- makes b depend on a.
CREATE TABLE relationships (
    tenant_id     text        NOT NULL,
    id            uuid        NOT NULL,
    type          text        NOT NULL CHECK (type IN ('depends_on', 'runs_on', 'hosted_on',
                                                      'connects_to', 'part_of', 'provides')),
    source_id     uuid        NOT NULL,
    target_id     uuid        NOT NULL CHECK (target_id <> source_id),
    dependent_id  uuid        GENERATED ALWAYS AS (
        CASE WHEN type IN ('part_of', 'provides') THEN target_id ELSE source_id END) STORED,
    dependency_id uuid        GENERATED ALWAYS AS (
        CASE WHEN type IN ('part_of', 'provides') THEN source_id ELSE target_id END) STORED,
    added_at      timestamptz NOT NULL,
    added_by      text        NOT NULL,
    removed_at    timestamptz,
    removed_by    text,
    PRIMARY KEY (tenant_id, id)
);
CREATE UNIQUE INDEX relationships_active
    ON relationships (tenant_id, source_id, type, target_id) WHERE removed_at IS NULL;
CREATE INDEX relationships_upward
    ON relationships (tenant_id, dependency_id) INCLUDE (dependent_id, type, id)
    WHERE removed_at IS NULL;
CREATE INDEX relationships_downward
    ON relationships (tenant_id, dependent_id) INCLUDE (dependency_id, type, id)
    WHERE removed_at IS NULL;

ALTER TABLE relationships ENABLE ROW LEVEL SECURITY;
ALTER TABLE relationships FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON relationships
    USING (tenant_id = current_setting('itsm.tenant_id', true));
