"""Topic names, and which record type travels on which topic: the one place they are spelled."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# record type -> topic suffix; an alias links identities, so it travels with the identifies
# (docs/design.md §7), and every command, unmerge included, on the commands topic
SOURCE_TOPICS = {
    "identify": "identify",
    "alias": "identify",
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
        """The user-scoped topics the user agent consumes, commands included, each once."""
        return [self.prefix + suffix for suffix in dict.fromkeys(SOURCE_TOPICS.values())]

    def type_of(self, topic: str) -> str | None:
        """The record type a topic is named for (the identify topic carries aliases too)."""
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
    def identity(self) -> str:
        """What each app's link graph takes (docs/design.md §7): aliases, unmerges and
        deletes, keyed by app id (projections/identity_step.py)."""
        return self.prefix + "identity"

    @property
    def merges(self) -> str:
        """The merge protocol's messages to ids (projections/origins.py): roots, joins,
        drops, added records and erases, keyed like the records of the id they are for, so
        that the user agent takes them with that id's records."""
        return self.prefix + "merges"

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
    """The partitioning key of a user's records: `"{app_id}:{user_id}"` as UTF-8."""
    return f"{app_id}:{user_id}".encode()


def key_of(record: Mapping[str, Any]) -> bytes:
    """The partitioning key of a valid record map: an alias is keyed by its previous id, so
    it lands where that id's records are (docs/design.md §7); every other record by its
    user id (a command's user id is the id it acts on, an unmerge's the previous id)."""
    if record["type"] == "alias":
        return record_key(record["app_id"], record["previous_id"])
    return record_key(record["app_id"], record["user_id"])
