"""The event envelope, the event catalogue and the Kafka protocol binding."""

from shared.events.catalogue import CATALOGUE, EventPayload, EventSpec, spec_for, spec_of
from shared.events.envelope import Envelope, new_envelope

__all__ = [
    "CATALOGUE",
    "Envelope",
    "EventPayload",
    "EventSpec",
    "new_envelope",
    "spec_for",
    "spec_of",
]
