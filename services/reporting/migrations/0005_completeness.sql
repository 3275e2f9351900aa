-- Completeness of the ledger and the entity timeline's index, kept by one background task
-- (services/reporting/application/completeness.py) that reads the ledger in position order.
--
-- The task works across tenants (one pass over the ledger serves every tenant), so it reads
-- the ledger with `itsm.all_tenants` on (shared/db.py all_tenants_transaction): a read-only
-- policy for platform jobs, as the outbox and inbox have. Requests never set it.
CREATE POLICY all_tenants_read ON ledger FOR SELECT
    USING (current_setting('itsm.all_tenants', true) = 'on');

-- How far the task has read (one row). `watermark`: every row at or below it is indexed.
-- Positions come from a sequence and commit out of order, so the task reads only up to a
-- horizon below which no transaction can still add a row: `pending_horizon` is the sequence's
-- last value taken in an earlier round, `pending_xids` the transactions in progress just after;
-- once all of those have ended, `pending_horizon` becomes `horizon`.
-- It belongs to no tenant: its `tenant_id` is '*' (every table carries one, with forced row
-- security), and only an all-tenants transaction sees it.
CREATE TABLE ledger_completeness (
    tenant_id       text    PRIMARY KEY DEFAULT '*' CHECK (tenant_id = '*'),
    watermark       bigint  NOT NULL DEFAULT 0,
    horizon         bigint  NOT NULL DEFAULT 0,
    pending_horizon bigint  NOT NULL DEFAULT 0,
    pending_xids    xid8[]  NOT NULL DEFAULT '{}',
    updated_at      timestamptz NOT NULL DEFAULT now()
);
INSERT INTO ledger_completeness DEFAULT VALUES;
ALTER TABLE ledger_completeness ENABLE ROW LEVEL SECURITY;
ALTER TABLE ledger_completeness FORCE ROW LEVEL SECURITY;
CREATE POLICY all_tenants ON ledger_completeness
    USING (current_setting('itsm.all_tenants', true) = 'on');

-- The last version seen of each aggregate whose family numbers its versions 1, 2, 3, ...
CREATE TABLE ledger_aggregate_versions (
    tenant_id    text   NOT NULL,
    subject      text   NOT NULL,
    last_version bigint NOT NULL,
    PRIMARY KEY (tenant_id, subject)
);

-- Gaps found: versions an aggregate skipped (version_gap), or an aggregate first seen above
-- version 1 (missing_event). `still_missing` shrinks as late events fill it; empty = closed.
CREATE TABLE ledger_gaps (
    tenant_id         text        NOT NULL,
    gap_id            bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    aggregate         text        NOT NULL,
    kind              text        NOT NULL CHECK (kind IN ('version_gap', 'missing_event')),
    missing_versions  bigint[]    NOT NULL,
    still_missing     bigint[]    NOT NULL,
    last_seen_version bigint,
    seen_version      bigint      NOT NULL,
    detected_position bigint      NOT NULL,
    detected_at       timestamptz NOT NULL DEFAULT now(),
    closed_position   bigint,
    closed_at         timestamptz
);
CREATE INDEX ledger_gaps_open ON ledger_gaps (tenant_id, aggregate) WHERE closed_at IS NULL;
CREATE INDEX ledger_gaps_tenant ON ledger_gaps (tenant_id, gap_id);

-- Which records each ledger row names: its subject, the ids in its subject and the id-valued
-- fields of its data. The timeline of a record is a range of this index.
CREATE TABLE ledger_references (
    tenant_id text   NOT NULL,
    entity    text   NOT NULL,
    position  bigint NOT NULL,
    PRIMARY KEY (tenant_id, entity, position)
);

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['ledger_aggregate_versions', 'ledger_gaps', 'ledger_references'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format(
            'CREATE POLICY tenant_isolation ON %I USING ('
            'tenant_id = current_setting(''itsm.tenant_id'', true)'
            ' OR current_setting(''itsm.all_tenants'', true) = ''on'')', t);
    END LOOP;
END
$$;
