-- Change records (ISO/IEC 20000-1 8.5.1): the record, every version of it, and the tenant's
-- record numbers (CHG<number>). Row-level security on every table, forced for the owner: a
-- query sees and writes only the rows of the tenant named by the transaction's itsm.tenant_id.

CREATE TABLE record_numbers (
    tenant_id text   NOT NULL,
    kind      text   NOT NULL,
    last      bigint NOT NULL,
    PRIMARY KEY (tenant_id, kind)
);

CREATE TABLE changes (
    tenant_id           text        NOT NULL,
    id                  uuid        NOT NULL,
    number              bigint      NOT NULL,
    type                text        NOT NULL CHECK (type IN ('standard', 'normal', 'emergency')),
    origin              text        NOT NULL
        CHECK (origin IN ('manual', 'problem', 'deployment', 'unauthorized')),
    state               text        NOT NULL CHECK (state IN (
        'new', 'assess', 'authorize', 'scheduled', 'implement', 'review', 'closed', 'cancelled')),
    title               text        NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
    description         text        NOT NULL,
    justification       text        NOT NULL,
    requester           text        NOT NULL,
    assignment_group    text,
    implementer         text,
    template_id         uuid,
    affected_cis        uuid[]      NOT NULL DEFAULT '{}',
    business_services   text[]      NOT NULL DEFAULT '{}',
    planned_start       timestamptz,
    planned_end         timestamptz,
    actual_start        timestamptz,
    actual_end          timestamptz,
    implementation_plan text,
    backout_plan        text,
    test_plan           text,
    test_evidence       text[]      NOT NULL DEFAULT '{}',
    backout_tested      boolean     NOT NULL DEFAULT false,
    risk_level          text,
    impact              text,
    incidents           uuid[]      NOT NULL DEFAULT '{}',
    problems            uuid[]      NOT NULL DEFAULT '{}',
    problem_request_id  uuid,
    release_id          uuid,
    outcome             text CHECK (outcome IN (
        'successful', 'successful_with_issues', 'failed', 'rolled_back')),
    cancel_reason       text,
    review_due_at       timestamptz,
    closed_at           timestamptz,
    version             integer     NOT NULL,
    created_at          timestamptz NOT NULL,
    created_by          text        NOT NULL,
    updated_at          timestamptz NOT NULL,
    updated_by          text        NOT NULL,
    PRIMARY KEY (tenant_id, id),
    CHECK ((planned_start IS NULL) = (planned_end IS NULL)),
    CHECK (planned_end IS NULL OR planned_end > planned_start),
    CHECK (state NOT IN ('review', 'closed') OR outcome IS NOT NULL)
);
CREATE UNIQUE INDEX changes_number ON changes (tenant_id, number);
CREATE INDEX changes_recent ON changes (tenant_id, created_at DESC, id DESC);
-- A problem's change request opens one change, however often the event arrives.
CREATE UNIQUE INDEX changes_problem_request ON changes (tenant_id, problem_request_id)
    WHERE problem_request_id IS NOT NULL;
-- The schedule: changes whose planned window overlaps a period, by CI.
CREATE INDEX changes_window ON changes (tenant_id, planned_start, planned_end)
    WHERE planned_start IS NOT NULL;
CREATE INDEX changes_cis ON changes USING gin (affected_cis);

-- Every version of a change: who changed what, when (the audit trail).
CREATE TABLE change_history (
    tenant_id text        NOT NULL,
    change_id uuid        NOT NULL,
    version   integer     NOT NULL,
    at        timestamptz NOT NULL,
    actor     text        NOT NULL,
    action    text        NOT NULL,
    changes   jsonb       NOT NULL,
    PRIMARY KEY (tenant_id, change_id, version),
    FOREIGN KEY (tenant_id, change_id) REFERENCES changes (tenant_id, id)
);

ALTER TABLE record_numbers ENABLE ROW LEVEL SECURITY;
ALTER TABLE record_numbers FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON record_numbers
    USING (tenant_id = current_setting('itsm.tenant_id', true));

ALTER TABLE changes ENABLE ROW LEVEL SECURITY;
ALTER TABLE changes FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON changes
    USING (tenant_id = current_setting('itsm.tenant_id', true));

ALTER TABLE change_history ENABLE ROW LEVEL SECURITY;
ALTER TABLE change_history FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON change_history
    USING (tenant_id = current_setting('itsm.tenant_id', true));
