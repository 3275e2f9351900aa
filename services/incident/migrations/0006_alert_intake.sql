-- Alert intake (issue 5): one row per alert group, keyed as the intake finds it. The row is the
-- group's lock: every notification of the group claims it (INSERT ... ON CONFLICT DO NOTHING,
-- then SELECT ... FOR UPDATE) in the transaction that writes the incident, so notifications of
-- one group arriving together on several connections or replicas apply one after the other and
-- open one incident, while notifications of different groups never wait for each other.
--
-- `incident_id` is the group's current incident: NULL only inside the transaction that claims a
-- new group, before its incident is written (committed rows always name one). A group whose
-- incident was closed or cancelled points at the next incident it opens.
--
-- The counters make "no alert lost" checkable: `alerts` is the sum of the alerts of every
-- notification applied to the group (one per event), `notifications` how many arrived,
-- `deduplicated` how many of those alerts went to the incident the group already had.
CREATE TABLE alert_groups (
    tenant_id         text        NOT NULL,
    source            text        NOT NULL CHECK (source IN ('alertmanager', 'events')),
    dedup_key         text        NOT NULL CHECK (length(dedup_key) BETWEEN 1 AND 255),
    incident_id       uuid,
    incidents_opened  integer     NOT NULL DEFAULT 0 CHECK (incidents_opened >= 0),
    notifications     bigint      NOT NULL DEFAULT 0 CHECK (notifications >= 0),
    alerts            bigint      NOT NULL DEFAULT 0 CHECK (alerts >= 0),
    deduplicated      bigint      NOT NULL DEFAULT 0 CHECK (deduplicated >= 0),
    first_received_at timestamptz NOT NULL,
    last_received_at  timestamptz NOT NULL,
    -- The last notification: what it asked (trigger, acknowledge, resolve) and what it did.
    last_action       text        CHECK (last_action IN ('trigger', 'acknowledge', 'resolve')),
    last_outcome      text,
    PRIMARY KEY (tenant_id, source, dedup_key),
    FOREIGN KEY (tenant_id, incident_id) REFERENCES incidents (tenant_id, id)
);

ALTER TABLE alert_groups ENABLE ROW LEVEL SECURITY;
ALTER TABLE alert_groups FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON alert_groups
    USING (tenant_id = current_setting('itsm.tenant_id', true));
