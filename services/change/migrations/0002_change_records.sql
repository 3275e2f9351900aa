-- Change records' use cases (issue 19, rfc): what the change service keeps of the incident
-- service's events. Row-level security on every table, forced for the owner, as in 0001.

-- The incidents the change service cares about (consumer `change-incident-projection`):
-- open major incidents on affected services or CIs (risk, schedule conflicts) and the
-- incidents an emergency change must link to. `version` is the incident's version of the
-- last event applied: an older one changes nothing (redeliveries, replays, rebuilds).
CREATE TABLE proj_incidents (
    tenant_id   text        NOT NULL,
    id          uuid        NOT NULL,
    number      bigint,
    title       text        NOT NULL DEFAULT '',
    state       text        NOT NULL,
    major       boolean     NOT NULL DEFAULT false,
    services    text[]      NOT NULL DEFAULT '{}',
    ci_id       uuid,
    declared_at timestamptz,
    resolved_at timestamptz,
    version     integer     NOT NULL,
    updated_at  timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
-- Open major incidents by service and by CI: the two ways a change's scope meets them.
CREATE INDEX proj_incidents_major_services ON proj_incidents USING gin (services)
    WHERE major AND resolved_at IS NULL;
CREATE INDEX proj_incidents_major_ci ON proj_incidents (tenant_id, ci_id)
    WHERE major AND resolved_at IS NULL;

-- Incidents the incident service flagged as possibly caused by a change
-- (`itsm.incident.change_suspected.v1`): evidence for the change's proposed outcome.
CREATE TABLE proj_change_suspicions (
    tenant_id      text        NOT NULL,
    change_id      text        NOT NULL,
    incident_id    uuid        NOT NULL,
    ci_id          text        NOT NULL,
    implemented_at timestamptz NOT NULL,
    flagged_at     timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, change_id, incident_id)
);

ALTER TABLE proj_incidents ENABLE ROW LEVEL SECURITY;
ALTER TABLE proj_incidents FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON proj_incidents
    USING (tenant_id = current_setting('itsm.tenant_id', true));

ALTER TABLE proj_change_suspicions ENABLE ROW LEVEL SECURITY;
ALTER TABLE proj_change_suspicions FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON proj_change_suspicions
    USING (tenant_id = current_setting('itsm.tenant_id', true));
