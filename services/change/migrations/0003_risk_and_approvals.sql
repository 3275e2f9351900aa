-- Risk and approvals (ISO/IEC 20000-1 8.5.1): the tenant's versioned rule sets (risk weights
-- and thresholds, approval policies), every risk assessment with its inputs, the approval
-- steps of each change's rounds, every decision bound to a content hash, and CAB meetings.
-- Row-level security on every table, forced for the owner, as in 0001.

-- Each PUT of a rule set is a new version; none is ever rewritten, so a recorded assessment
-- can be replayed under the exact rules it was scored with. Version 0 is the code's defaults.
CREATE TABLE change_rule_sets (
    tenant_id  text        NOT NULL,
    kind       text        NOT NULL CHECK (kind IN ('risk', 'approval')),
    version    integer     NOT NULL CHECK (version > 0),
    body       jsonb       NOT NULL,
    created_at timestamptz NOT NULL,
    created_by text        NOT NULL,
    PRIMARY KEY (tenant_id, kind, version)
);

CREATE TABLE risk_assessments (
    tenant_id        text        NOT NULL,
    id               uuid        NOT NULL,
    change_id        uuid        NOT NULL,
    change_version   integer     NOT NULL,
    rule_set_version integer     NOT NULL CHECK (rule_set_version >= 0),
    inputs           jsonb       NOT NULL,
    factors          jsonb       NOT NULL,
    score            double precision NOT NULL,
    computed_level   text        NOT NULL,
    level            text        NOT NULL,
    override_reason  text,
    assessed_at      timestamptz NOT NULL,
    assessed_by      text        NOT NULL,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, change_id) REFERENCES changes (tenant_id, id),
    CHECK (level = computed_level OR override_reason IS NOT NULL)
);
CREATE INDEX risk_assessments_of_change
    ON risk_assessments (tenant_id, change_id, assessed_at DESC, id DESC);

-- The steps of each approval round of a change: a round opens when the change enters
-- authorize, bound to its content hash.
CREATE TABLE approval_steps (
    tenant_id        text        NOT NULL,
    id               uuid        NOT NULL,
    change_id        uuid        NOT NULL,
    round            integer     NOT NULL CHECK (round > 0),
    position         integer     NOT NULL CHECK (position >= 0),
    name             text        NOT NULL,
    approvers        jsonb       NOT NULL,
    quorum           text        NOT NULL CHECK (quorum IN ('any', 'all', 'n_of_m')),
    n                integer,
    deadline_seconds double precision NOT NULL CHECK (deadline_seconds > 0),
    content_hash     text        NOT NULL,
    state            text        NOT NULL
        CHECK (state IN ('waiting', 'pending', 'approved', 'rejected', 'void')),
    opened_at        timestamptz NOT NULL,
    deadline_at      timestamptz,
    escalate_at      timestamptz,
    escalations      integer     NOT NULL DEFAULT 0,
    completed_at     timestamptz,
    version          integer     NOT NULL,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, change_id, round, position),
    FOREIGN KEY (tenant_id, change_id) REFERENCES changes (tenant_id, id),
    CHECK (quorum <> 'n_of_m' OR n IS NOT NULL)
);
CREATE INDEX approval_steps_pending ON approval_steps (tenant_id, deadline_at)
    WHERE state = 'pending';
-- The escalation task serves every tenant from one index (shared/db.py all_tenants_transaction).
CREATE INDEX approval_steps_escalate ON approval_steps (escalate_at) WHERE state = 'pending';

CREATE TABLE approval_decisions (
    tenant_id      text        NOT NULL,
    id             uuid        NOT NULL,
    step_id        uuid        NOT NULL,
    change_id      uuid        NOT NULL,
    approver       text        NOT NULL,
    decision       text        NOT NULL CHECK (decision IN ('approve', 'reject')),
    comment        text        NOT NULL,
    content_hash   text        NOT NULL,
    at             timestamptz NOT NULL,
    cab_meeting_id uuid,
    PRIMARY KEY (tenant_id, id),
    -- One person's decision counts once per step.
    UNIQUE (tenant_id, step_id, approver),
    FOREIGN KEY (tenant_id, step_id) REFERENCES approval_steps (tenant_id, id)
);
CREATE INDEX approval_decisions_of_change ON approval_decisions (tenant_id, change_id, at);

CREATE TABLE cab_meetings (
    tenant_id  text        NOT NULL,
    id         uuid        NOT NULL,
    title      text        NOT NULL,
    starts_at  timestamptz NOT NULL,
    members    text[]      NOT NULL,
    created_at timestamptz NOT NULL,
    created_by text        NOT NULL,
    PRIMARY KEY (tenant_id, id)
);

ALTER TABLE change_rule_sets ENABLE ROW LEVEL SECURITY;
ALTER TABLE change_rule_sets FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON change_rule_sets
    USING (tenant_id = current_setting('itsm.tenant_id', true));

ALTER TABLE risk_assessments ENABLE ROW LEVEL SECURITY;
ALTER TABLE risk_assessments FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON risk_assessments
    USING (tenant_id = current_setting('itsm.tenant_id', true));

ALTER TABLE approval_steps ENABLE ROW LEVEL SECURITY;
ALTER TABLE approval_steps FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON approval_steps
    USING (tenant_id = current_setting('itsm.tenant_id', true));
-- The escalation task finds due steps of every tenant, then works each under its own tenant.
CREATE POLICY all_tenants_read ON approval_steps FOR SELECT
    USING (current_setting('itsm.all_tenants', true) = 'on');

ALTER TABLE approval_decisions ENABLE ROW LEVEL SECURITY;
ALTER TABLE approval_decisions FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON approval_decisions
    USING (tenant_id = current_setting('itsm.tenant_id', true));

ALTER TABLE cab_meetings ENABLE ROW LEVEL SECURITY;
ALTER TABLE cab_meetings FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON cab_meetings
    USING (tenant_id = current_setting('itsm.tenant_id', true));
