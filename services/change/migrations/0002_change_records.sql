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

-- The tenant's change settings (`GET/PUT /change-settings`); a tenant without a row uses the
-- defaults (version 0). Kept whole as JSON: the application validates it.
CREATE TABLE change_settings (
    tenant_id  text        PRIMARY KEY,
    settings   jsonb       NOT NULL,
    version    integer     NOT NULL CHECK (version >= 1),
    updated_at timestamptz NOT NULL,
    updated_by text        NOT NULL
);

-- The catalogue of standard changes (pre-approved templates), versioned: a standard change
-- names the template and is raised only from an active one.
CREATE TABLE change_templates (
    tenant_id           text        NOT NULL,
    id                  uuid        NOT NULL,
    name                text        NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    description         text        NOT NULL,
    implementation_plan text        NOT NULL,
    backout_plan        text        NOT NULL,
    test_plan           text        NOT NULL,
    ci_ids              uuid[]      NOT NULL DEFAULT '{}',
    ci_classes          text[]      NOT NULL DEFAULT '{}',
    business_service    text,
    risk_level          text        NOT NULL CHECK (risk_level = 'low'),
    active              boolean     NOT NULL,
    version             integer     NOT NULL,
    created_at          timestamptz NOT NULL,
    created_by          text        NOT NULL,
    updated_at          timestamptz NOT NULL,
    updated_by          text        NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE UNIQUE INDEX change_templates_name ON change_templates (tenant_id, lower(name));

-- A change's post-implementation review (PIR): one per change, required before closure for
-- failed, rolled back, emergency and (per the tenant) high-risk changes.
CREATE TABLE change_reviews (
    tenant_id     text        NOT NULL,
    change_id     uuid        NOT NULL,
    what_happened text        NOT NULL,
    lessons       text        NOT NULL,
    actions       text[]      NOT NULL DEFAULT '{}',
    reviewer      text        NOT NULL,
    reviewed_at   timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, change_id),
    FOREIGN KEY (tenant_id, change_id) REFERENCES changes (tenant_id, id)
);

-- Backouts executed during a change's implementation: evidence for its proposed outcome.
CREATE TABLE change_backouts (
    tenant_id   text        NOT NULL,
    change_id   uuid        NOT NULL,
    reason      text        NOT NULL,
    executed_by text        NOT NULL,
    executed_at timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, change_id),
    FOREIGN KEY (tenant_id, change_id) REFERENCES changes (tenant_id, id)
);

ALTER TABLE change_settings ENABLE ROW LEVEL SECURITY;
ALTER TABLE change_settings FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON change_settings
    USING (tenant_id = current_setting('itsm.tenant_id', true));

ALTER TABLE change_templates ENABLE ROW LEVEL SECURITY;
ALTER TABLE change_templates FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON change_templates
    USING (tenant_id = current_setting('itsm.tenant_id', true));

ALTER TABLE change_reviews ENABLE ROW LEVEL SECURITY;
ALTER TABLE change_reviews FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON change_reviews
    USING (tenant_id = current_setting('itsm.tenant_id', true));

ALTER TABLE change_backouts ENABLE ROW LEVEL SECURITY;
ALTER TABLE change_backouts FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON change_backouts
    USING (tenant_id = current_setting('itsm.tenant_id', true));

-- Changes by tenant, type and state, kept by a trigger: the `itsm_changes` gauge reads every
-- tenant's counts (shared/db.py all_tenants_transaction), never the changes themselves.
CREATE TABLE change_census (
    tenant_id text    NOT NULL,
    type      text    NOT NULL,
    state     text    NOT NULL,
    count     integer NOT NULL,
    PRIMARY KEY (tenant_id, type, state)
);

CREATE FUNCTION change_census_apply() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        IF OLD.type = NEW.type AND OLD.state = NEW.state THEN
            RETURN NULL;
        END IF;
        UPDATE change_census SET count = count - 1
            WHERE tenant_id = OLD.tenant_id AND type = OLD.type AND state = OLD.state;
    END IF;
    INSERT INTO change_census AS c (tenant_id, type, state, count)
        VALUES (NEW.tenant_id, NEW.type, NEW.state, 1)
        ON CONFLICT (tenant_id, type, state) DO UPDATE SET count = c.count + 1;
    RETURN NULL;
END
$$;
CREATE TRIGGER change_census_count AFTER INSERT OR UPDATE OF type, state ON changes
    FOR EACH ROW EXECUTE FUNCTION change_census_apply();

ALTER TABLE change_census ENABLE ROW LEVEL SECURITY;
ALTER TABLE change_census FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON change_census
    USING (tenant_id = current_setting('itsm.tenant_id', true));
-- Counts only: the census reads every tenant's.
CREATE POLICY all_tenants_read ON change_census FOR SELECT
    USING (current_setting('itsm.all_tenants', true) = 'on');
