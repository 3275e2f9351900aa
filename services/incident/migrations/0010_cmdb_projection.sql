-- The incident service now keeps the shared CMDB graph projection (the `cmdb` component,
-- shared/migrations/cmdb/, applied before this service's own migrations) instead of its own
-- CI, external id, membership and business service tables of 0003. Their rows move over, then
-- the tables go: nothing the service knew is lost, even events the config topic no longer
-- retains. Relationships were never projected: the new consumer `incident-cmdb-projection`
-- starts in a consumer group of its own, so it reads the config topic from its earliest
-- offset, adds them and catches up; the rows moved here carry their versions, so the older
-- events it reads again change nothing. Calendars and SLA policies stay in proj_* (0003).

-- Forced row-level security shows the owner one tenant at a time; a move of every tenant's
-- rows needs it off for the length of this transaction (as owner, which this role is).
ALTER TABLE proj_cis NO FORCE ROW LEVEL SECURITY;
ALTER TABLE proj_ci_external_ids NO FORCE ROW LEVEL SECURITY;
ALTER TABLE proj_ci_services NO FORCE ROW LEVEL SECURITY;
ALTER TABLE proj_business_services NO FORCE ROW LEVEL SECURITY;
ALTER TABLE cmdb_cis NO FORCE ROW LEVEL SECURITY;
ALTER TABLE cmdb_ci_external_ids NO FORCE ROW LEVEL SECURITY;
ALTER TABLE cmdb_ci_services NO FORCE ROW LEVEL SECURITY;
ALTER TABLE cmdb_business_services NO FORCE ROW LEVEL SECURITY;

INSERT INTO cmdb_cis (tenant_id, id, ci_class, name, status, owner_team, criticality,
                      external_ids, version, updated_at)
SELECT tenant_id, id, ci_class, name, status, owner_team, criticality, external_ids, version,
       updated_at
FROM proj_cis
ON CONFLICT DO NOTHING;

INSERT INTO cmdb_ci_external_ids (tenant_id, ci_id, source, external_id)
SELECT tenant_id, ci_id, source, external_id FROM proj_ci_external_ids
ON CONFLICT DO NOTHING;

INSERT INTO cmdb_ci_services (tenant_id, ci_id, services, sequence)
SELECT tenant_id, ci_id, services, sequence FROM proj_ci_services
ON CONFLICT DO NOTHING;

INSERT INTO cmdb_business_services (tenant_id, id, name, status, criticality, owner, customer,
                                    availability_target, sla_policy, version)
SELECT tenant_id, id, name, status, criticality, owner, customer, availability_target,
       sla_policy, version
FROM proj_business_services
ON CONFLICT DO NOTHING;

ALTER TABLE cmdb_cis FORCE ROW LEVEL SECURITY;
ALTER TABLE cmdb_ci_external_ids FORCE ROW LEVEL SECURITY;
ALTER TABLE cmdb_ci_services FORCE ROW LEVEL SECURITY;
ALTER TABLE cmdb_business_services FORCE ROW LEVEL SECURITY;

DROP TABLE proj_cis, proj_ci_external_ids, proj_ci_services, proj_business_services;
