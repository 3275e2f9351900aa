-- The verifiable log (docs/ledger.md): per tenant, an RFC 9162 Merkle tree over the ledger's
-- rows in the order they were stored. Each row gets a dense index in its tenant's log and the
-- hash of its canonical bytes (the leaf); the hashes of complete subtrees are kept so that any
-- proof is one indexed query; a head per tenant holds the tree's size and right frontier, which
-- is all an append needs; signed checkpoints and the keys that signed them are kept for ever.
ALTER TABLE ledger
    ADD COLUMN leaf_index bigint CHECK (leaf_index >= 0),
    ADD COLUMN leaf_hash  bytea  CHECK (octet_length(leaf_hash) = 32);
CREATE UNIQUE INDEX ledger_tenant_leaf ON ledger (tenant_id, leaf_index) INCLUDE (leaf_hash);
-- Rows stored before this migration join the log once (services/reporting/adapters/log.py
-- `adopt`), in position order, before any newer row of their tenant.
CREATE INDEX ledger_not_in_the_log ON ledger (tenant_id, position) WHERE leaf_hash IS NULL;

-- A row is written with its message and its place in the log. (0003's CHECK did this for the
-- message; a CHECK also holds for updates, and adopting an old row is one update of its leaf.)
ALTER TABLE ledger DROP CONSTRAINT ledger_keeps_the_message;
CREATE FUNCTION ledger_row_is_complete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.message_value IS NULL OR NEW.message_headers IS NULL THEN
        RAISE EXCEPTION 'a ledger row keeps the message it records'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_keeps_the_message';
    END IF;
    IF NEW.leaf_index IS NULL OR NEW.leaf_hash IS NULL THEN
        RAISE EXCEPTION 'a ledger row takes its place in the verifiable log as it is written'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_joins_the_log';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER ledger_row_is_complete BEFORE INSERT ON ledger
    FOR EACH ROW EXECUTE FUNCTION ledger_row_is_complete();

-- Append-only as before, with one exception: a row stored before the log existed is given its
-- index and leaf once, and nothing else of it changes.
CREATE FUNCTION ledger_only_adopts() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.leaf_hash IS NULL AND OLD.leaf_index IS NULL
        AND NEW.leaf_hash IS NOT NULL AND NEW.leaf_index IS NOT NULL
        AND to_jsonb(NEW) - 'leaf_index' - 'leaf_hash' = to_jsonb(OLD) - 'leaf_index' - 'leaf_hash'
    THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'the ledger is append-only: UPDATE is not allowed'
        USING ERRCODE = 'insufficient_privilege';
END
$$;
DROP TRIGGER ledger_no_update_or_delete ON ledger;
CREATE TRIGGER ledger_no_delete BEFORE DELETE ON ledger
    FOR EACH ROW EXECUTE FUNCTION ledger_is_append_only();
CREATE TRIGGER ledger_no_update BEFORE UPDATE ON ledger
    FOR EACH ROW EXECUTE FUNCTION ledger_only_adopts();

-- The hashes of complete subtrees above the leaves (level L >= 1 covers 2^L leaves; index i is
-- the i-th such subtree from the left). The leaves themselves (level 0) are ledger.leaf_hash.
CREATE TABLE ledger_nodes (
    tenant_id text     NOT NULL,
    level     smallint NOT NULL CHECK (level BETWEEN 1 AND 62),
    index     bigint   NOT NULL CHECK (index >= 0),
    hash      bytea    NOT NULL CHECK (octet_length(hash) = 32),
    PRIMARY KEY (tenant_id, level, index)
);

-- The head of each tenant's tree: its size and right frontier (one hash per set bit of the
-- size, largest subtree first). Appends lock it, which orders them. It also remembers what the
-- log has been told about its signing key and configuration, and numbers the events the
-- ledger writes about itself (subject `ledger`).
CREATE TABLE ledger_heads (
    tenant_id     text        PRIMARY KEY,
    size          bigint      NOT NULL DEFAULT 0 CHECK (size >= 0),
    frontier      bytea[]     NOT NULL DEFAULT '{}',
    -- false: rows stored before the log existed wait to be adopted (before any new row).
    adopted       boolean     NOT NULL DEFAULT true,
    key_id        text,
    configuration jsonb,
    version       bigint      NOT NULL DEFAULT 0,
    updated_at    timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- Every tenant with rows from before the log gets a head that says they wait for adoption.
-- The migration runs as the table's owner: lifting FORCE for this one statement lets it see
-- every tenant's rows (the transaction makes the lift invisible to anyone else).
ALTER TABLE ledger NO FORCE ROW LEVEL SECURITY;
INSERT INTO ledger_heads (tenant_id, adopted) SELECT DISTINCT tenant_id, false FROM ledger;
ALTER TABLE ledger FORCE ROW LEVEL SECURITY;

-- Signed checkpoints (C2SP signed notes), one per tenant and tree size.
CREATE TABLE ledger_checkpoints (
    tenant_id text        NOT NULL,
    tree_size bigint      NOT NULL CHECK (tree_size >= 0),
    root_hash bytea       NOT NULL CHECK (octet_length(root_hash) = 32),
    note      text        NOT NULL,
    key_id    text        NOT NULL,
    signed_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (tenant_id, tree_size)
);

-- The ledger's signing keys (the platform's, not a tenant's: no row-level security). A key is
-- retired once, when another one takes over.
CREATE TABLE ledger_keys (
    key_id       text        PRIMARY KEY,
    verifier_key text        NOT NULL UNIQUE,
    first_used   timestamptz NOT NULL DEFAULT clock_timestamp(),
    retired_at   timestamptz
);

CREATE TRIGGER ledger_nodes_no_update_or_delete BEFORE UPDATE OR DELETE ON ledger_nodes
    FOR EACH ROW EXECUTE FUNCTION ledger_is_append_only();
CREATE TRIGGER ledger_nodes_no_truncate BEFORE TRUNCATE ON ledger_nodes
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_is_append_only();
CREATE TRIGGER ledger_checkpoints_no_update_or_delete BEFORE UPDATE OR DELETE
    ON ledger_checkpoints FOR EACH ROW EXECUTE FUNCTION ledger_is_append_only();
CREATE TRIGGER ledger_checkpoints_no_truncate BEFORE TRUNCATE ON ledger_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_is_append_only();
CREATE TRIGGER ledger_heads_no_delete BEFORE DELETE ON ledger_heads
    FOR EACH ROW EXECUTE FUNCTION ledger_is_append_only();
CREATE TRIGGER ledger_heads_no_truncate BEFORE TRUNCATE ON ledger_heads
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_is_append_only();

CREATE FUNCTION ledger_keys_only_retire() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.retired_at IS NULL
        AND (NEW.key_id, NEW.verifier_key, NEW.first_used)
            IS NOT DISTINCT FROM (OLD.key_id, OLD.verifier_key, OLD.first_used)
    THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'ledger_keys is append-only: % is not allowed (only retiring a key once)',
        TG_OP USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER ledger_keys_only_retire BEFORE UPDATE OR DELETE ON ledger_keys
    FOR EACH ROW EXECUTE FUNCTION ledger_keys_only_retire();
CREATE TRIGGER ledger_keys_no_truncate BEFORE TRUNCATE ON ledger_keys
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_is_append_only();

-- Row-level security as for the ledger (0002). The checkpointer finds the tenants to sign for in
-- an all-tenants transaction (shared/db.py): heads and checkpoints are readable there, and
-- nothing they hold is secret (sizes, hashes, signed notes).
ALTER TABLE ledger_nodes ENABLE ROW LEVEL SECURITY;
ALTER TABLE ledger_nodes FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON ledger_nodes
    USING (tenant_id = current_setting('itsm.tenant_id', true));
ALTER TABLE ledger_heads ENABLE ROW LEVEL SECURITY;
ALTER TABLE ledger_heads FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON ledger_heads
    USING (tenant_id = current_setting('itsm.tenant_id', true));
CREATE POLICY all_tenants_read ON ledger_heads FOR SELECT
    USING (current_setting('itsm.all_tenants', true) = 'on');
ALTER TABLE ledger_checkpoints ENABLE ROW LEVEL SECURITY;
ALTER TABLE ledger_checkpoints FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON ledger_checkpoints
    USING (tenant_id = current_setting('itsm.tenant_id', true));
CREATE POLICY all_tenants_read ON ledger_checkpoints FOR SELECT
    USING (current_setting('itsm.all_tenants', true) = 'on');
