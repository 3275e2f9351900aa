-- The changes that answer a problem's change requests, as the change service announces them
-- (consumer `incident-problem-changes`): a problem shows each change's number and state.
-- `version` is the change's version of the last event applied: an older one changes nothing.
CREATE TABLE problem_changes (
    tenant_id  text        NOT NULL,
    problem_id uuid        NOT NULL,
    change_id  uuid        NOT NULL,
    number     bigint      NOT NULL,
    type       text        NOT NULL,
    state      text        NOT NULL,
    outcome    text,
    request_id uuid,
    version    integer     NOT NULL,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, problem_id, change_id)
);

ALTER TABLE problem_changes ENABLE ROW LEVEL SECURITY;
ALTER TABLE problem_changes FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON problem_changes
    USING (tenant_id = current_setting('itsm.tenant_id', true));
