-- The gate settings become versioned like the change settings: `GET /gate-settings` answers an
-- ETag, `PUT` requires If-Match, and each version is announced by
-- `itsm.change.gate_settings_changed.v1` through the outbox (the ledger records it), so which
-- environments count as production never changes without a trace. Rows saved before this
-- migration are version 1; a tenant without a row uses the defaults (version 0). Like
-- `change_settings`, no history table: the versions are the events in the ledger.
ALTER TABLE gate_settings ADD COLUMN version integer NOT NULL DEFAULT 1 CHECK (version >= 1);
ALTER TABLE gate_settings ALTER COLUMN version DROP DEFAULT;
