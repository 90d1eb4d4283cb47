"""Size and time limits a record must respect to be accepted (DESIGN.md §2)."""

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
        """Event times before this are past the retention and are not kept."""
        return now_ms - self.retention_days * DAY_MS

    def newest_ms(self, now_ms: int) -> int:
        return now_ms + self.max_future_hours * HOUR_MS
