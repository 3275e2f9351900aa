-- Evidence exports (services/reporting/README.md "Evidence exports"): one row per export job.
-- The row is the job's whole state, so any replica resumes a job whose worker died (its lease
-- ran out): the plan (entry range, checkpoint, previous export) is fixed once chosen, and the
-- archive built from it is the same whoever builds it.
CREATE TABLE evidence_exports (
    id               uuid        PRIMARY KEY,
    tenant_id        text        NOT NULL,
    period_from      timestamptz NOT NULL,
    period_to        timestamptz NOT NULL CHECK (period_to > period_from),
    clauses          text[]      NOT NULL,
    requested_by     text        NOT NULL,
    state            text        NOT NULL DEFAULT 'queued'
        CHECK (state IN ('queued', 'running', 'done', 'failed')),
    -- the plan: entries [first_index, tree_size) of the log, the checkpoint of tree_size, and
    -- the previous export's checkpoint size for the consistency proof
    first_index      bigint,
    tree_size        bigint,
    previous_size    bigint,
    period_first     bigint,
    period_last      bigint,
    entries_done     bigint      NOT NULL DEFAULT 0,
    entries_total    bigint      NOT NULL DEFAULT 0,
    lease_until      timestamptz,
    attempts         integer     NOT NULL DEFAULT 0,
    error            text,
    archive          bytea,
    archive_sha256   text,
    created_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at      timestamptz
);
CREATE INDEX evidence_exports_to_do ON evidence_exports (created_at)
    WHERE state IN ('queued', 'running');
CREATE INDEX evidence_exports_done ON evidence_exports (tenant_id, tree_size)
    WHERE state = 'done';

ALTER TABLE evidence_exports ENABLE ROW LEVEL SECURITY;
ALTER TABLE evidence_exports FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON evidence_exports
    USING (tenant_id = current_setting('itsm.tenant_id', true));
-- The job runner looks for work across tenants, then works in the job's tenant.
CREATE POLICY all_tenants_read ON evidence_exports FOR SELECT
    USING (current_setting('itsm.all_tenants', true) = 'on');
