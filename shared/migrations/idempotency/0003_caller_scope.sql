-- Keys belong to the caller (the token's subject) as well as the tenant: another user of the
-- tenant who happens to send the same key gets a record of their own, never someone else's.
-- Rows stored before this keep an empty caller and simply age out with the retention period.
ALTER TABLE idempotency_keys ADD COLUMN caller text NOT NULL DEFAULT '';
ALTER TABLE idempotency_keys DROP CONSTRAINT idempotency_keys_pkey;
ALTER TABLE idempotency_keys ADD PRIMARY KEY (tenant_id, caller, key);
-- The answer replayed exactly as first sent (headers kept: content type, location, ETag).
ALTER TABLE idempotency_keys ADD COLUMN response_bytes bytea;
