"""Input types every service's API shares, so a rule about a kind of value lives in one place."""

from shared.timestamps import EARLIEST, LATEST, RANGE, Timestamp, in_range

__all__ = ["EARLIEST", "LATEST", "RANGE", "Timestamp", "in_range"]
