-- Service requests (ISO/IEC 20000-1 8.6.2): the record, its approvals and its history.
-- States and moves: services/incident/domain/workflow.py (SERVICE_REQUEST); rules on top of
-- them (segregation of duties, named approvers, notes on fulfilment): domain/request.py.

CREATE TABLE service_requests (
    tenant_id        text        NOT NULL,
    id               uuid        NOT NULL,
    number           bigint      NOT NULL,
    title            text        NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
    description      text        NOT NULL,
    -- Who the request is for: the submitter, or the person named in `requested_for`.
    requester        text        NOT NULL CHECK (length(requester) > 0),
    -- What is requested: the catalogue item's name, as free text.
    item             text,
    -- The business service (its CI id in the config service), when one is named.
    service          text,
    impact           smallint    NOT NULL CHECK (impact BETWEEN 1 AND 3),
    urgency          smallint    NOT NULL CHECK (urgency BETWEEN 1 AND 3),
    priority         smallint    NOT NULL CHECK (priority BETWEEN 1 AND 5),
    needs_approval   boolean     NOT NULL,
    -- Named approvers, all of whom must approve; empty: any one holder of request:approve.
    approvers        text[]      NOT NULL DEFAULT '{}',
    state            text        NOT NULL CHECK (state IN ('submitted', 'awaiting_approval',
                                     'in_fulfilment', 'fulfilled', 'closed', 'rejected',
                                     'cancelled')),
    sla_policy       text,
    fulfilment_notes text,
    version          integer     NOT NULL CHECK (version >= 1),
    created_at       timestamptz NOT NULL,
    created_by       text        NOT NULL,
    updated_at       timestamptz NOT NULL,
    updated_by       text        NOT NULL,
    fulfilled_at     timestamptz,
    closed_at        timestamptz,
    closed_by        text,
    PRIMARY KEY (tenant_id, id),
    CHECK (needs_approval OR cardinality(approvers) = 0),
    CHECK ((closed_at IS NULL) = (closed_by IS NULL))
);
CREATE UNIQUE INDEX service_requests_id ON service_requests (id);
CREATE UNIQUE INDEX service_requests_number ON service_requests (tenant_id, number);
-- Lists: newest first within a tenant, and the usual filters.
CREATE INDEX service_requests_recent ON service_requests (tenant_id, created_at DESC, id DESC);
CREATE INDEX service_requests_open ON service_requests (tenant_id, state, priority)
    WHERE state NOT IN ('closed', 'rejected', 'cancelled');
CREATE INDEX service_requests_requester ON service_requests (tenant_id, requester, created_at DESC);
CREATE INDEX service_requests_submitter ON service_requests (tenant_id, created_by, created_at DESC);
CREATE INDEX service_requests_service ON service_requests (tenant_id, service)
    WHERE service IS NOT NULL;

-- Every decision on a request: who, what, when, why. One decision per approver and request.
CREATE TABLE request_approvals (
    tenant_id   text        NOT NULL,
    request_id  uuid        NOT NULL,
    approver    text        NOT NULL CHECK (length(approver) > 0),
    decision    text        NOT NULL CHECK (decision IN ('approved', 'rejected')),
    at          timestamptz NOT NULL,
    comment     text        NOT NULL DEFAULT '',
    -- The request's version this decision produced (its history row).
    version     integer     NOT NULL,
    PRIMARY KEY (tenant_id, request_id, approver),
    FOREIGN KEY (tenant_id, request_id) REFERENCES service_requests (tenant_id, id),
    -- The requester is owed the reason for a rejection.
    CHECK (decision = 'approved' OR length(btrim(comment)) > 0)
);

-- Every version of a request: who changed what, when (the audit trail).
CREATE TABLE request_history (
    tenant_id   text        NOT NULL,
    request_id  uuid        NOT NULL,
    version     integer     NOT NULL,
    at          timestamptz NOT NULL,
    actor       text        NOT NULL,
    action      text        NOT NULL,
    changes     jsonb       NOT NULL,
    PRIMARY KEY (tenant_id, request_id, version),
    FOREIGN KEY (tenant_id, request_id) REFERENCES service_requests (tenant_id, id)
);

ALTER TABLE service_requests ENABLE ROW LEVEL SECURITY;
ALTER TABLE service_requests FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON service_requests
    USING (tenant_id = current_setting('itsm.tenant_id', true));

ALTER TABLE request_approvals ENABLE ROW LEVEL SECURITY;
ALTER TABLE request_approvals FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON request_approvals
    USING (tenant_id = current_setting('itsm.tenant_id', true));

ALTER TABLE request_history ENABLE ROW LEVEL SECURITY;
ALTER TABLE request_history FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON request_history
    USING (tenant_id = current_setting('itsm.tenant_id', true));
