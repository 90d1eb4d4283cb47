"""Triage of consumed messages: typed records to fold, and dead letters with their reasons."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any, Protocol

from projections.step import Positioned
from schemas.codec import Rejected, decode, encode
from schemas.limits import Limits
from streams.topics import Topics


class Message(Protocol):
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


def dead_letter(reason: str, detail: str, message: Message) -> bytes:
    """The DLQ record (schemas.models.DeadLetter) for one consumed message."""
    return encode(
        {
            "reason": reason,
            "detail": detail,
            "topic": message.topic,
            "partition": message.partition,
            "offset": message.offset,
            "key": message.key,
            "value": message.value if message.value is not None else b"",
            "failed_at": int(time.time() * 1000),
        }
    )


def triage(
    messages: Iterable[Any], topics: Topics, limits: Limits, now_ms: int
) -> tuple[list[Positioned], list[tuple[Any, bytes]]]:
    """Split messages into records to fold and (message, DLQ value) pairs. Never raises."""
    good: list[Positioned] = []
    dead: list[tuple[Any, bytes]] = []
    for msg in messages:
        try:
            record = decode(msg.value or b"", limits, now_ms)
            expected = topics.for_type(record.type)
            if msg.topic != expected:
                raise Rejected("wrong_topic", f"a {record.type} record belongs on {expected}")
        except Rejected as exc:
            dead.append((msg, dead_letter(exc.reason, exc.detail, msg)))
            continue
        except Exception as exc:  # a decoder bug must not stop the worker or lose the record
            dead.append((msg, dead_letter("decoder_error", f"{type(exc).__name__}: {exc}", msg)))
            continue
        good.append(Positioned(record, msg.topic, msg.partition, msg.offset))
    return good, dead
