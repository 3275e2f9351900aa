"""The CMDB graph projection: CIs, typed relationships, business services and which services
each CI supports, as the config service's events describe them.

A service that needs the CI graph keeps this projection in its own schema (rule 1: no service
calls another): it is marked `keeps_cmdb` in `shared/registry.py`, lists the `cmdb` shared
migration component (`shared/migrations/cmdb/`) and runs `consumer.cmdb_consumer`. It reads
with `reads` (CIs by id, name or external id, business services, membership) and walks the
graph with `walks.walk` (upstream or downstream to a depth).
"""
