-- The outbox is a queue: rows live for milliseconds. Vacuum and analyse it by row counts, not
-- by a fraction of its (tiny) size, so dead rows and stale statistics never pile up.
ALTER TABLE outbox SET (
    autovacuum_vacuum_scale_factor = 0.0,
    autovacuum_vacuum_threshold = 5000,
    autovacuum_analyze_scale_factor = 0.0,
    autovacuum_analyze_threshold = 5000
);
