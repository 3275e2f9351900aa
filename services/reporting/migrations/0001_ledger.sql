-- The ledger: every event of every service, one row each, never updated or deleted.
CREATE TABLE ledger (
    position       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id      text        NOT NULL,
    event_id       uuid        NOT NULL UNIQUE,
    type           text        NOT NULL,
    source         text        NOT NULL,
    subject        text        NOT NULL,
    sequence       bigint      NOT NULL,
    time           timestamptz NOT NULL,
    correlation_id text        NOT NULL,
    causation_id   text,
    actor          text        NOT NULL,
    data           jsonb       NOT NULL,
    topic          text        NOT NULL,
    partition      integer     NOT NULL,
    kafka_offset   bigint      NOT NULL,
    recorded_at    timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX ledger_tenant_subject ON ledger (tenant_id, subject, position);
CREATE INDEX ledger_tenant_position ON ledger (tenant_id, position);

CREATE FUNCTION ledger_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the ledger is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER ledger_no_update_or_delete BEFORE UPDATE OR DELETE ON ledger
    FOR EACH ROW EXECUTE FUNCTION ledger_is_append_only();
CREATE TRIGGER ledger_no_truncate BEFORE TRUNCATE ON ledger
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_is_append_only();
