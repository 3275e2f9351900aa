-- SLA clocks: one row per record (incident or service request) and clock kind (response,
-- resolution). The SlaClock fields (services/incident/domain/sla.py) are columns, and the row
-- keeps a snapshot of what the clock counts with (policy, priority, targets, calendar,
-- pause_on, hold reason), so the scheduler rebuilds and advances a clock from its row alone,
-- and a change of priority or hold reason needs no lookup in the policy projection.
-- `next_due_at` is the clock's schedule: the earlier of its pending warning and breach
-- instants, NULL when nothing is pending (paused, stopped, both crossings recorded).
-- `sequence` counts the events of the clock (subject `sla/<record id>/<kind>`), gap-free.
CREATE TABLE sla_clocks (
    tenant_id               text             NOT NULL,
    record                  text             NOT NULL CHECK (record IN ('incident', 'request')),
    record_id               text             NOT NULL CHECK (length(record_id) > 0),
    kind                    text             NOT NULL CHECK (kind IN ('response', 'resolution')),
    policy                  text             NOT NULL,
    policy_version          integer          NOT NULL CHECK (policy_version >= 1),
    priority                smallint         NOT NULL CHECK (priority BETWEEN 1 AND 5),
    target_seconds          integer          NOT NULL CHECK (target_seconds > 0),
    warning_threshold       double precision NOT NULL
                                CHECK (warning_threshold > 0 AND warning_threshold < 1),
    started_at              timestamptz      NOT NULL,
    elapsed_seconds         double precision NOT NULL DEFAULT 0 CHECK (elapsed_seconds >= 0),
    running_since           timestamptz,
    paused_since            timestamptz,
    stopped_at              timestamptz,
    paused_seconds          double precision NOT NULL DEFAULT 0 CHECK (paused_seconds >= 0),
    paused_business_seconds double precision NOT NULL DEFAULT 0
                                CHECK (paused_business_seconds >= 0),
    warned_at               timestamptz,
    breached_at             timestamptz,
    -- The policy's targets for every priority ({"P1": {"response_seconds": .., ..}, ..}), so a
    -- change of priority needs no lookup, and its calendar and pausing hold reasons.
    targets                 jsonb            NOT NULL,
    calendar                jsonb            NOT NULL,
    pause_on                text[]           NOT NULL DEFAULT '{}',
    -- Why the record is on hold (NULL: it is not); the clock is paused when pause_on has it.
    hold_reason             text,
    warning_at              timestamptz,
    breach_at               timestamptz,
    next_due_at             timestamptz,
    sequence                integer          NOT NULL DEFAULT 0 CHECK (sequence >= 0),
    correlation_id          text,
    -- Why the scheduler could not advance the clock last time (it retries later), or NULL.
    last_error              text,
    updated_at              timestamptz      NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (tenant_id, record, record_id, kind),
    CHECK (num_nonnulls(running_since, paused_since, stopped_at) = 1),
    -- Only a running clock has a schedule.
    CHECK (next_due_at IS NULL OR running_since IS NOT NULL)
);

-- The scheduler's queue: only clocks with a pending deadline, earliest first.
CREATE INDEX sla_clocks_next_due ON sla_clocks (next_due_at) WHERE next_due_at IS NOT NULL;

ALTER TABLE sla_clocks ENABLE ROW LEVEL SECURITY;
ALTER TABLE sla_clocks FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON sla_clocks
    USING (tenant_id = current_setting('itsm.tenant_id', true));
-- The SLA scheduler serves every tenant from one queue (shared/db.py all_tenants_transaction):
-- it reads the schedule, and claims (SELECT ... FOR UPDATE) and advances due clocks only. It
-- never inserts or deletes a clock; the events it writes go to the outbox under each row's
-- own tenant.
CREATE POLICY all_tenants_read ON sla_clocks FOR SELECT
    USING (current_setting('itsm.all_tenants', true) = 'on');
CREATE POLICY all_tenants_advance ON sla_clocks FOR UPDATE
    USING (current_setting('itsm.all_tenants', true) = 'on' AND next_due_at IS NOT NULL)
    WITH CHECK (current_setting('itsm.all_tenants', true) = 'on');
