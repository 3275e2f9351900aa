-- An import's Idempotency-Key. A streamed upload commits as it reads, so the shared middleware
-- cannot hold it in one request transaction: the import run carries the key itself, scoped to
-- the tenant and the caller (the token's subject), one run per (tenant, caller, key). A failed
-- run lets its key go (both columns back to NULL), so that a retry runs afresh.
ALTER TABLE imports
    ADD COLUMN idempotency_caller text,
    ADD COLUMN idempotency_key    text,
    ADD CONSTRAINT imports_idempotency_key_has_caller
        CHECK ((idempotency_key IS NULL) = (idempotency_caller IS NULL));
CREATE UNIQUE INDEX imports_idempotency_key ON imports (tenant_id, idempotency_caller, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
