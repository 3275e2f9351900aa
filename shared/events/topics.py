"""The Kafka topics events travel on: one per publishing domain, plus the revocations."""

INCIDENT_EVENTS = "itsm.incident.events"
CHANGE_EVENTS = "itsm.change.events"
CONFIG_EVENTS = "itsm.config.events"
# Compacted: every replica of every service reads it from the beginning at start-up.
AUTH_REVOCATIONS = "itsm.auth.revocations"
# The reporting service's own events: its ledger's keys, configuration and gaps.
REPORTING_EVENTS = "itsm.reporting.events"
