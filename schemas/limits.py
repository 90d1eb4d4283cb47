"""Size and time limits a record must respect to be accepted (docs/design.md §2)."""

from __future__ import annotations

from dataclasses import dataclass

DAY_MS = 86_400_000
HOUR_MS = 3_600_000


@dataclass(frozen=True)
class Limits:
    max_keys: int = 256
    max_string_bytes: int = 8 * 1024
    max_record_bytes: int = 64 * 1024
    max_future_hours: int = 24
    retention_days: int = 400
    max_depth: int = 4  # a record is a map of flat maps; anything deeper is not ours

    def oldest_ms(self, now_ms: int) -> int:
        """Event times before this are past the retention and are not kept (commands are kept
        whatever their age: a delete keeps erasing, an exclude keeps holding)."""
        return now_ms - self.retention_days * DAY_MS

    def newest_ms(self, now_ms: int) -> int:
        return now_ms + self.max_future_hours * HOUR_MS

    def log_retention_ms(self) -> int:
        """How long Kafka must keep a record (its topic's retention.ms) for a replay to still find
        every record the views hold: the one place this is computed, for creating the topics
        and for checking them.

        A record is accepted with event time E >= now - retention_days and E <= P +
        max_future_hours, P being its produce time, and the views keep it until E +
        retention_days. Kafka deletes by the record's timestamp, P when the producer does not
        set one, so it must keep the record retention_days + max_future_hours after P; one day
        more for the clocks of producers, broker and workers that disagree. (Kafka deletes a
        segment once its newest record is past retention.ms: late, never early.)"""
        return self.retention_days * DAY_MS + self.max_future_hours * HOUR_MS + DAY_MS
