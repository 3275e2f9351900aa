-- Unauthorized changes (issue 19, configuration items under change control): each detection
-- the config service announces (`itsm.config.ci.unauthorized_change_detected.v1`, by event id)
-- opens one change for review, however often the event arrives or is published again.
CREATE TABLE unauthorized_detections (
    tenant_id    text        NOT NULL,
    detection_id uuid        NOT NULL,
    change_id    uuid        NOT NULL,
    ci_id        uuid        NOT NULL,
    found_by     text        NOT NULL CHECK (found_by IN ('ci_modified', 'drift', 'deployment')),
    detected_at  timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, detection_id),
    FOREIGN KEY (tenant_id, change_id) REFERENCES changes (tenant_id, id)
);
CREATE INDEX unauthorized_detections_ci ON unauthorized_detections (tenant_id, ci_id);

ALTER TABLE unauthorized_detections ENABLE ROW LEVEL SECURITY;
ALTER TABLE unauthorized_detections FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON unauthorized_detections
    USING (tenant_id = current_setting('itsm.tenant_id', true));
