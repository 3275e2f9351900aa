-- The ledger keeps every event as Kafka carried it. An event is valid when it is a CloudEvent
-- of the catalogue, whatever its data holds; PostgreSQL's text and jsonb refuse some valid
-- JSON (a string with U+0000, a lone surrogate), and the ledger used to dead-letter such an
-- event: an action with no record. Now the message's bytes are the record:
--   message_key, message_value  the Kafka record's key and value, byte for byte;
--   message_headers             its headers as Kafka's record format (v2) encodes them: a
--                               zigzag varint count, then per header a varint key length, the
--                               key's UTF-8 bytes, a varint value length (-1: null), the value.
-- `data` stays as a jsonb copy for querying: the value itself, or, when jsonb cannot hold it,
-- a sanitized copy (U+0000 and lone surrogates as U+FFFD) with data_sanitized set.
ALTER TABLE ledger RENAME COLUMN sequence TO version;  -- `itsmversion` (once `sequence`)
ALTER TABLE ledger
    ADD COLUMN message_key     bytea,
    ADD COLUMN message_value   bytea,
    ADD COLUMN message_headers bytea,
    ADD COLUMN data_sanitized  boolean NOT NULL DEFAULT false;
-- Rows written before this migration have no message; every row written after must have it.
ALTER TABLE ledger ADD CONSTRAINT ledger_keeps_the_message
    CHECK (message_value IS NOT NULL AND message_headers IS NOT NULL) NOT VALID;
