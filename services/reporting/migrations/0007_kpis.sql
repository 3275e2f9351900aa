-- KPIs (services/reporting/README.md "KPIs"): a projection of each tenant's log, folded by the
-- KPI task (services/reporting/application/kpis.py) up to the tenant's newest signed checkpoint
-- and never past it, so every figure stands on a checkpoint.
--
-- One fact per record (incident, request, problem, change, deployment, survey, CI): its times,
-- classification and outcomes as `services/reporting/domain/kpis.py` `Fact` (the JSON in
-- `body`). `first_at` and `last_at` (epoch seconds; `last_at` is infinity while the record is
-- in a backlog) bound the times any KPI places the record at, so the facts a range of periods
-- needs are one index range (`kpi_fact_services` below for some services only).
CREATE TABLE kpi_facts (
    tenant_id text             NOT NULL,
    kind      text             NOT NULL,
    record_id text             NOT NULL,
    first_at  double precision NOT NULL,
    last_at   double precision NOT NULL,
    services  text[]           NOT NULL DEFAULT '{}',
    body      jsonb            NOT NULL,
    PRIMARY KEY (tenant_id, kind, record_id)
);
CREATE INDEX kpi_facts_by_time ON kpi_facts (tenant_id, kind, last_at, first_at);

-- The same range per business service of a fact (a fact of two services has two rows): a
-- query for some services reads only their facts' index entries, then only those facts.
CREATE TABLE kpi_fact_services (
    tenant_id text             NOT NULL,
    kind      text             NOT NULL,
    service   text             NOT NULL,
    record_id text             NOT NULL,
    first_at  double precision NOT NULL,
    last_at   double precision NOT NULL,
    PRIMARY KEY (tenant_id, kind, record_id, service)
);
CREATE INDEX kpi_fact_services_by_time
    ON kpi_fact_services (tenant_id, kind, service, last_at, first_at) INCLUDE (record_id);

-- How far each tenant's facts are folded: exactly up to a signed checkpoint (`tree_size`,
-- `root_hash`: the basis of every figure), and the newest event time folded (`as_of`: a
-- period not over is measured up to it).
CREATE TABLE kpi_progress (
    tenant_id  text             PRIMARY KEY,
    tree_size  bigint           NOT NULL DEFAULT 0 CHECK (tree_size >= 0),
    root_hash  bytea,
    as_of      double precision NOT NULL DEFAULT 0,
    updated_at timestamptz      NOT NULL DEFAULT now()
);

-- Requests read their tenant's rows; the task and the metrics read and write across tenants
-- in an all-tenants transaction (as the completeness task's tables).
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['kpi_facts', 'kpi_fact_services', 'kpi_progress'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format(
            'CREATE POLICY tenant_isolation ON %I USING ('
            'tenant_id = current_setting(''itsm.tenant_id'', true)'
            ' OR current_setting(''itsm.all_tenants'', true) = ''on'')', t);
    END LOOP;
END
$$;
