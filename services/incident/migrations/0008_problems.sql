-- Problems and known errors (ISO/IEC 20000-1 8.6.3): the record, its linked incidents, its
-- history, and the trends that suggested (or opened) problems from recurring incidents.
--
-- A known error is not a record of its own: it is a problem whose root cause and workaround
-- are published (state known_error), and the problem's id is the known error's id (what
-- incidents.known_error_id and the events' known_error_id carry).

CREATE TABLE problems (
    tenant_id                text        NOT NULL,
    id                       uuid        NOT NULL,
    number                   bigint      NOT NULL,
    title                    text        NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
    description              text        NOT NULL,
    ci_id                    uuid,
    service                  text,
    origin                   text        NOT NULL CHECK (origin IN ('manual', 'trend')),
    state                    text        NOT NULL CHECK (state IN (
        'new', 'investigating', 'known_error', 'resolved', 'closed', 'cancelled')),
    root_cause               text,
    workaround               text,
    resolution_notes         text,
    known_error_published_at timestamptz,
    -- request_id of every ProblemChangeRequestedV1, oldest first (the change service's key).
    change_requests          uuid[]      NOT NULL DEFAULT '{}',
    version                  integer     NOT NULL,
    created_at               timestamptz NOT NULL,
    created_by               text        NOT NULL,
    updated_at               timestamptz NOT NULL,
    updated_by               text        NOT NULL,
    resolved_at              timestamptz,
    closed_at                timestamptz,
    PRIMARY KEY (tenant_id, id),
    CONSTRAINT problems_known_error CHECK (
        state <> 'known_error'
        OR (root_cause IS NOT NULL AND workaround IS NOT NULL
            AND known_error_published_at IS NOT NULL))
);

CREATE UNIQUE INDEX problems_number ON problems (tenant_id, number);
CREATE INDEX problems_recent ON problems (tenant_id, created_at DESC, id DESC);
CREATE INDEX problems_ci ON problems (tenant_id, ci_id) WHERE ci_id IS NOT NULL;
CREATE INDEX problems_service ON problems (tenant_id, service) WHERE service IS NOT NULL;
-- The known error a new incident gets its workaround from: newest first, on a CI or a service.
CREATE INDEX problems_known_errors_ci ON problems (tenant_id, ci_id, known_error_published_at DESC)
    WHERE state = 'known_error' AND ci_id IS NOT NULL;
CREATE INDEX problems_known_errors_service
    ON problems (tenant_id, service, known_error_published_at DESC)
    WHERE state = 'known_error' AND service IS NOT NULL;

-- Which incidents a problem covers, who linked each and when (incidents.problem_id points back).
CREATE TABLE problem_incidents (
    tenant_id   text        NOT NULL,
    problem_id  uuid        NOT NULL,
    incident_id uuid        NOT NULL,
    linked_at   timestamptz NOT NULL,
    linked_by   text        NOT NULL,
    PRIMARY KEY (tenant_id, problem_id, incident_id),
    FOREIGN KEY (tenant_id, problem_id) REFERENCES problems (tenant_id, id),
    FOREIGN KEY (tenant_id, incident_id) REFERENCES incidents (tenant_id, id)
);
CREATE INDEX problem_incidents_incident ON problem_incidents (tenant_id, incident_id);

-- Every version of a problem: who changed what, when (the audit trail).
CREATE TABLE problem_history (
    tenant_id   text        NOT NULL,
    problem_id  uuid        NOT NULL,
    version     integer     NOT NULL,
    at          timestamptz NOT NULL,
    actor       text        NOT NULL,
    action      text        NOT NULL,
    changes     jsonb       NOT NULL,
    PRIMARY KEY (tenant_id, problem_id, version),
    FOREIGN KEY (tenant_id, problem_id) REFERENCES problems (tenant_id, id)
);

-- The last suggestion per trend key (a CI id or a business service id). The primary key makes
-- a suggestion happen once however many incident transactions race for it: while the last one
-- is younger than the tenant's window, or its problem is still open, the key stays quiet.
-- `suggestions` numbers them: the sequence of the `trend/<basis>/<key>` events.
CREATE TABLE problem_trends (
    tenant_id    text        NOT NULL,
    basis        text        NOT NULL CHECK (basis IN ('ci', 'service')),
    key          text        NOT NULL,
    suggestions  integer     NOT NULL,
    suggested_at timestamptz NOT NULL,
    window_start timestamptz NOT NULL,
    incidents    uuid[]      NOT NULL,
    problem_id   uuid,
    PRIMARY KEY (tenant_id, basis, key)
);

ALTER TABLE problems ENABLE ROW LEVEL SECURITY;
ALTER TABLE problems FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON problems
    USING (tenant_id = current_setting('itsm.tenant_id', true));

ALTER TABLE problem_incidents ENABLE ROW LEVEL SECURITY;
ALTER TABLE problem_incidents FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON problem_incidents
    USING (tenant_id = current_setting('itsm.tenant_id', true));

ALTER TABLE problem_history ENABLE ROW LEVEL SECURITY;
ALTER TABLE problem_history FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON problem_history
    USING (tenant_id = current_setting('itsm.tenant_id', true));

ALTER TABLE problem_trends ENABLE ROW LEVEL SECURITY;
ALTER TABLE problem_trends FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON problem_trends
    USING (tenant_id = current_setting('itsm.tenant_id', true));
