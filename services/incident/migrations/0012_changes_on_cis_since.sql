-- A change is on a CI from the first sign of it to the end of its implementation: a CI written
-- under the change's id (`itsm.config.ci.*` with `change_id`, accepted only while the change is
-- being implemented) is the first sign, `itsm.change.implemented.v1` the end. Incidents logged
-- on the CI from `started_at` until the tenant's window after `implemented_at` are suspected,
-- so an incident during the implementation is evidence before the change's outcome is decided.
-- Title and outcome are what the change service announces at the end; a CI write says neither.

-- Forced row-level security shows the owner one tenant at a time; filling the new column for
-- every tenant's rows needs it off for the length of this transaction (as owner).
ALTER TABLE change_implementations NO FORCE ROW LEVEL SECURITY;

ALTER TABLE change_implementations ADD COLUMN started_at timestamptz;
UPDATE change_implementations SET started_at = implemented_at;
ALTER TABLE change_implementations ALTER COLUMN started_at SET NOT NULL;
ALTER TABLE change_implementations
    ADD CONSTRAINT change_implementations_span CHECK (started_at <= implemented_at);
ALTER TABLE change_implementations ALTER COLUMN title DROP NOT NULL;
ALTER TABLE change_implementations ALTER COLUMN outcome DROP NOT NULL;

ALTER TABLE change_implementations FORCE ROW LEVEL SECURITY;
