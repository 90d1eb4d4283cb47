"""Topic names, and which record type travels on which topic: the one place they are spelled."""

from __future__ import annotations

from dataclasses import dataclass

# record type -> topic suffix
SOURCE_TOPICS = {
    "identify": "identify",
    "track": "track",
    "page": "page",
    "feedback": "feedback",
    "content": "content",
    "command": "commands",
}


@dataclass(frozen=True)
class Topics:
    prefix: str = "profiles."

    def for_type(self, record_type: str) -> str:
        return self.prefix + SOURCE_TOPICS[record_type]

    @property
    def sources(self) -> list[str]:
        """The user-scoped topics the user agent consumes, commands included."""
        return [self.prefix + suffix for suffix in SOURCE_TOPICS.values()]

    def type_of(self, topic: str) -> str | None:
        for record_type, suffix in SOURCE_TOPICS.items():
            if topic == self.prefix + suffix:
                return record_type
        return None

    @property
    def dlq(self) -> str:
        return self.prefix + "dlq"

    @property
    def company_deltas(self) -> str:
        return self.prefix + "company-deltas"

    @property
    def segments(self) -> str:
        """Segment definitions, compacted, keyed by segment id (a tombstone removes one)."""
        return self.prefix + "segments"

    @property
    def dlq_redriven(self) -> str:
        """The log of which dead letters `profiles dlq redrive` has sent back."""
        return self.prefix + "dlq-redriven"

    @property
    def purge_staging(self) -> str:
        """Where `profiles purge` keeps a partition's surviving records while it rewrites it."""
        return self.prefix + "purge-staging"


def record_key(app_id: str, user_id: str) -> bytes:
    """The partitioning key of every user-scoped record."""
    return f"{app_id}:{user_id}".encode()
