"""The SDK-side publisher: validate JSON lines, key and route each record to its topic."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaProducer

from schemas.codec import Rejected, encode, validate
from streams.kafka import client_options, ensure_topics
from streams.settings import Settings
from streams.topics import Topics, key_of

COMMAND_REFUSED = (
    "command_refused: command records are an operator's (exclude, include, reset_content, "
    "delete, unmerge): publish them with --commands, or send one with profiles command"
)


@dataclass
class PublishReport:
    sent: Counter[str] = field(default_factory=Counter)
    rejected: list[tuple[int, str]] = field(default_factory=list)  # (line number, reason)


def check_lines(
    lines: Iterable[str], settings: Settings, *, commands: bool = False
) -> tuple[list[dict[str, Any]], PublishReport]:
    """Parse and validate every line; what is invalid is reported by line and never sent, and
    so are `command` records unless `commands` (an operator's, never an SDK's). An `alias` is
    an SDK's record like an identify: it needs no flag."""
    report = PublishReport()
    good = []
    now_ms = int(time.time() * 1000)
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError as exc:
            report.rejected.append((number, f"invalid_json: {exc}"))
            continue
        if not isinstance(obj, dict):
            report.rejected.append((number, "not_a_map: a line must hold a JSON object"))
            continue
        try:
            validate(obj, settings.limits, now_ms)
        except Rejected as exc:
            report.rejected.append((number, f"{exc.reason}: {exc.detail}"))
            continue
        if obj["type"] == "command" and not commands:
            report.rejected.append((number, COMMAND_REFUSED))
            continue
        good.append(obj)
    return good, report


def record_producer(settings: Settings) -> AIOKafkaProducer:
    """The producer of records: every write acknowledged by all in-sync replicas, and
    idempotent, so its own retries never write a record twice."""
    return AIOKafkaProducer(
        **client_options(settings),
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
        max_batch_size=256 * 1024,
    )


async def send_record(
    producer: AIOKafkaProducer, topics: Topics, obj: dict[str, Any], *, as_json: bool = False
) -> asyncio.Future[Any]:
    """Hand a valid record to the producer: its type's topic, keyed by app and user (an
    alias by app and previous id); the future is done when Kafka acknowledged it."""
    value = json.dumps(obj, ensure_ascii=False).encode() if as_json else encode(obj)
    return await producer.send(topics.for_type(obj["type"]), value, key=key_of(obj))


async def send_records(
    records: list[dict[str, Any]],
    settings: Settings,
    report: PublishReport,
    *,
    as_json: bool = False,
) -> None:
    topics = Topics(settings.topic_prefix)
    await ensure_topics(settings)  # never let broker auto-creation pick the partition count
    producer = record_producer(settings)
    await producer.start()
    try:
        pending: list[asyncio.Future[Any]] = []
        try:
            for obj in records:
                pending.append(await send_record(producer, topics, obj, as_json=as_json))
                report.sent[obj["type"]] += 1
                if len(pending) >= 10_000:
                    await acknowledged(pending)
                    pending.clear()
        except Exception:
            await asyncio.gather(*pending, return_exceptions=True)  # none left unretrieved
            raise
        await acknowledged(pending)
    finally:
        await producer.stop()


async def acknowledged(pending: list[asyncio.Future[Any]]) -> None:
    """Wait until Kafka answered every send; the first refusal (a topic the login may not
    write) raises once all are settled, so asyncio has no failed future left to log at exit
    (one line per record, after the CLI's one line)."""
    for result in await asyncio.gather(*pending, return_exceptions=True):
        if isinstance(result, BaseException):
            raise result


def command_record(
    command: str, app_id: str, user_id: str, issued_at: int | str, reason: str | None = None
) -> dict[str, Any]:
    """An operator command event (docs/design.md §2), with a fresh command id. For an
    `unmerge` (§7), `user_id` is the previous id: the one to stand alone again."""
    record: dict[str, Any] = {
        "type": "command",
        "command": command,
        "command_id": str(uuid.uuid4()),
        "issued_at": issued_at,
        "app_id": app_id,
        "user_id": user_id,
    }
    if reason is not None:
        record["reason"] = reason
    return record


def alias_record(
    app_id: str, previous_id: str, user_id: str, timestamp: int | str
) -> dict[str, Any]:
    """An alias (docs/design.md §7) as an operator sends it, with a fresh event id."""
    return {
        "type": "alias",
        "event_id": str(uuid.uuid4()),
        "timestamp": timestamp,
        "app_id": app_id,
        "user_id": user_id,
        "previous_id": previous_id,
    }


async def publish_records(records: list[dict[str, Any]], settings: Settings) -> PublishReport:
    """Validate and send records (all or nothing: the first invalid one raises Rejected)."""
    now_ms = int(time.time() * 1000)
    for obj in records:
        validate(obj, settings.limits, now_ms)
    report = PublishReport()
    await send_records(records, settings, report)
    return report
