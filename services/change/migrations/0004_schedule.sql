-- The change schedule: maintenance and blackout windows (WIN<number>) with their history, and
-- the last conflicts computed for each change (an event is published when they differ).
-- Row-level security on every table, forced for the owner, as in 0001.

CREATE TABLE change_windows (
    tenant_id        text        NOT NULL,
    id               uuid        NOT NULL,
    number           bigint      NOT NULL,
    state            text        NOT NULL CHECK (state IN ('active', 'retired')),
    name             text        NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    kind             text        NOT NULL CHECK (kind IN ('maintenance', 'blackout')),
    scope            text        NOT NULL CHECK (scope IN ('all', 'service', 'cis')),
    description      text        NOT NULL,
    service          text,
    ci_ids           text[]      NOT NULL DEFAULT '{}',
    -- Local wall-clock time in time_zone: 02:00 stays 02:00 across clock changes.
    start            timestamp   NOT NULL,
    duration_seconds integer     NOT NULL CHECK (duration_seconds BETWEEN 60 AND 2678400),
    rrule            text,
    exclusions       date[]      NOT NULL DEFAULT '{}',
    time_zone        text        NOT NULL,
    calendar         text,
    retire_reason    text,
    version          integer     NOT NULL,
    created_at       timestamptz NOT NULL,
    created_by       text        NOT NULL,
    updated_at       timestamptz NOT NULL,
    updated_by       text        NOT NULL,
    PRIMARY KEY (tenant_id, id),
    CHECK ((scope = 'service') = (service IS NOT NULL)),
    CHECK ((scope = 'cis') = (cardinality(ci_ids) > 0))
);
CREATE UNIQUE INDEX change_windows_number ON change_windows (tenant_id, number);
CREATE INDEX change_windows_recent ON change_windows (tenant_id, created_at DESC, id DESC);
CREATE INDEX change_windows_active ON change_windows (tenant_id, kind) WHERE state = 'active';

CREATE TABLE change_window_history (
    tenant_id text        NOT NULL,
    window_id uuid        NOT NULL,
    version   integer     NOT NULL,
    at        timestamptz NOT NULL,
    actor     text        NOT NULL,
    action    text        NOT NULL,
    changes   jsonb       NOT NULL,
    PRIMARY KEY (tenant_id, window_id, version),
    FOREIGN KEY (tenant_id, window_id) REFERENCES change_windows (tenant_id, id)
);

-- The conflicts last computed for a change, to publish only when they differ.
CREATE TABLE change_conflicts (
    tenant_id   text        NOT NULL,
    change_id   uuid        NOT NULL,
    fingerprint text        NOT NULL,
    conflicts   jsonb       NOT NULL,
    computed_at timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, change_id),
    FOREIGN KEY (tenant_id, change_id) REFERENCES changes (tenant_id, id)
);

-- Business-hours calendars (itsm.config.calendar.defined.v1): a window named after one is
-- read in its time zone.
CREATE TABLE change_calendars (
    tenant_id text    NOT NULL,
    name      text    NOT NULL,
    time_zone text    NOT NULL,
    spec      jsonb   NOT NULL,
    version   integer NOT NULL,
    PRIMARY KEY (tenant_id, name)
);

-- The implementer's bookings (the implementer conflict) and the schedule by state.
CREATE INDEX changes_implementer_window ON changes (tenant_id, implementer, planned_start)
    WHERE implementer IS NOT NULL AND planned_start IS NOT NULL;

ALTER TABLE change_windows ENABLE ROW LEVEL SECURITY;
ALTER TABLE change_windows FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON change_windows
    USING (tenant_id = current_setting('itsm.tenant_id', true));

ALTER TABLE change_window_history ENABLE ROW LEVEL SECURITY;
ALTER TABLE change_window_history FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON change_window_history
    USING (tenant_id = current_setting('itsm.tenant_id', true));

ALTER TABLE change_conflicts ENABLE ROW LEVEL SECURITY;
ALTER TABLE change_conflicts FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON change_conflicts
    USING (tenant_id = current_setting('itsm.tenant_id', true));

ALTER TABLE change_calendars ENABLE ROW LEVEL SECURITY;
ALTER TABLE change_calendars FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON change_calendars
    USING (tenant_id = current_setting('itsm.tenant_id', true));
