-- Discovery imports: one row per import (its progress, committed batch by batch) and one per
-- input row with its outcome, so the report can be read while and after the import runs.
CREATE TABLE imports (
    tenant_id   text        NOT NULL,
    id          uuid        NOT NULL,
    source      text        NOT NULL,
    format      text        NOT NULL CHECK (format IN ('jsonl', 'csv')),
    status      text        NOT NULL CHECK (status IN ('running', 'completed', 'failed')),
    rows        integer     NOT NULL DEFAULT 0,
    created     integer     NOT NULL DEFAULT 0,
    updated     integer     NOT NULL DEFAULT 0,
    unchanged   integer     NOT NULL DEFAULT 0,
    drift       integer     NOT NULL DEFAULT 0,
    rejected    integer     NOT NULL DEFAULT 0,
    bytes_read  bigint      NOT NULL DEFAULT 0,
    started_at  timestamptz NOT NULL,
    started_by  text        NOT NULL,
    finished_at timestamptz,
    error       text,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX imports_recent ON imports (tenant_id, started_at DESC, id);

CREATE TABLE import_rows (
    tenant_id text    NOT NULL,
    import_id uuid    NOT NULL,
    line      integer NOT NULL,
    kind      text    NOT NULL CHECK (kind IN ('ci', 'relationship', 'unknown')),
    key       text,
    outcome   text    NOT NULL CHECK (outcome IN ('created', 'updated', 'unchanged', 'drift',
                                                  'rejected')),
    reason    text,
    ci_id     uuid,
    PRIMARY KEY (tenant_id, import_id, line)
);

-- CIs by class and status for the metrics: kept by statement-level triggers on `cis` (one
-- upsert per statement, keys locked in a fixed order), readable across tenants by the gauge.
CREATE TABLE ci_census (
    tenant_id text    NOT NULL,
    class     text    NOT NULL,
    status    text    NOT NULL,
    count     bigint  NOT NULL,
    PRIMARY KEY (tenant_id, class, status)
);

CREATE FUNCTION ci_census_apply() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO ci_census AS c (tenant_id, class, status, count)
        SELECT tenant_id, class, status, count(*) FROM new_rows
        GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
        ON CONFLICT (tenant_id, class, status) DO UPDATE SET count = c.count + EXCLUDED.count;
    ELSE
        INSERT INTO ci_census AS c (tenant_id, class, status, count)
        SELECT tenant_id, class, status, sum(delta) FROM (
            SELECT tenant_id, class, status, 1 AS delta FROM new_rows
            UNION ALL
            SELECT tenant_id, class, status, -1 FROM old_rows
        ) d
        GROUP BY 1, 2, 3 HAVING sum(delta) <> 0 ORDER BY 1, 2, 3
        ON CONFLICT (tenant_id, class, status) DO UPDATE SET count = c.count + EXCLUDED.count;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER cis_census_insert AFTER INSERT ON cis
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION ci_census_apply();
CREATE TRIGGER cis_census_update AFTER UPDATE ON cis
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION ci_census_apply();

-- Count what is there already.
INSERT INTO ci_census (tenant_id, class, status, count)
SELECT tenant_id, class, status, count(*) FROM cis GROUP BY 1, 2, 3;

ALTER TABLE imports ENABLE ROW LEVEL SECURITY;
ALTER TABLE imports FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON imports USING (tenant_id = current_setting('itsm.tenant_id', true));
ALTER TABLE import_rows ENABLE ROW LEVEL SECURITY;
ALTER TABLE import_rows FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON import_rows USING (tenant_id = current_setting('itsm.tenant_id', true));
ALTER TABLE ci_census ENABLE ROW LEVEL SECURITY;
ALTER TABLE ci_census FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON ci_census USING (tenant_id = current_setting('itsm.tenant_id', true));
-- Counts only: the metrics gauge reads every tenant's (shared/db.py all_tenants_transaction).
CREATE POLICY all_tenants_read ON ci_census FOR SELECT
    USING (current_setting('itsm.all_tenants', true) = 'on');
