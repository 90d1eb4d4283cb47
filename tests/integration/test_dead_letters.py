"""Bad records go to the DLQ with their reason and original bytes; good ones next to them land."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import msgpack
import pytest
from aiokafka import AIOKafkaProducer

from streams.kafka import client_options, ensure_topics
from streams.topics import Topics, record_key

pytestmark = pytest.mark.integration


def pack(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def track(user: str, eid: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": "track",
        "app_id": "dlq-app",
        "user_id": user,
        "event_id": eid,
        "timestamp": int(time.time() * 1000) - 60_000,
        "name": "Clicked",
        **extra,
    }


BAD: list[tuple[str, str, bytes]] = [  # (topic type, expected reason, value)
    ("track", "invalid_msgpack", b"\xc1\xff\x00garbage"),
    ("track", "invalid_json", b"{not json at all"),
    ("page", "not_a_map", pack([1, 2, 3])),
    ("track", "invalid_field", pack(track("u1", "bad-type", name=123))),
    ("track", "record_too_large", pack(track("u1", "big", properties={"x": "y" * 70_000}))),
    (
        "track",
        "timestamp_in_future",
        pack({**track("u1", "future"), "timestamp": int(time.time() * 1000) + 3 * 86_400_000}),
    ),
    ("track", "unknown_type", pack({**track("u1", "odd"), "type": "purchase"})),
    (
        "track",
        "wrong_topic",
        pack(
            {
                "type": "identify",
                "app_id": "dlq-app",
                "user_id": "u1",
                "event_id": "idf",
                "timestamp": int(time.time() * 1000),
                "traits": {},
            }
        ),
    ),
    ("track", "invalid_utf8", b"\x81\xa4name\xa2\xff\xfe"),
    (
        "feedback",
        "invalid_field",
        pack(
            {
                "type": "feedback",
                "app_id": "dlq-app",
                "user_id": "u1",
                "event_id": "nps-no-score",
                "timestamp": int(time.time() * 1000),
                "survey_id": "s",
                "survey_type": "nps",
            }
        ),
    ),
    ("track", "too_deep", pack({**track("u1", "deep"), "properties": {"a": {"b": {"c": [1]}}}})),
    ("track", "string_too_long", pack(track("u1", "long", name="n" * 9000))),
]


async def produce(settings: Any) -> tuple[dict[tuple[str, int, int], str], int]:
    """Interleave good and bad records on the same keys; return where each bad one landed."""
    topics = Topics(settings.topic_prefix)
    await ensure_topics(settings)
    producer = AIOKafkaProducer(**client_options(settings), acks="all", enable_idempotence=True)
    await producer.start()
    where: dict[tuple[str, int, int], str] = {}
    good = 0
    try:
        for i, (kind, reason, value) in enumerate(BAD):
            key = record_key("dlq-app", "u1")
            await producer.send_and_wait(
                topics.for_type("track"), pack(track("u1", f"good-{i}")), key=key
            )
            meta = await producer.send_and_wait(topics.for_type(kind), value, key=key)
            where[(meta.topic, meta.partition, meta.offset)] = reason
            await producer.send_and_wait(
                topics.for_type("track"),
                json.dumps(track("u2", f"good-json-{i}")).encode(),
                key=record_key("dlq-app", "u2"),
            )
            good += 2
    finally:
        await producer.stop()
    return where, good


def test_every_bad_record_is_dead_lettered_and_every_good_one_lands(pipeline: Any) -> None:
    worker = pipeline.start_worker()
    where, good = asyncio.run(produce(pipeline.settings))
    status = pipeline.wait_idle()

    letters = pipeline.dead_letters(len(BAD))
    assert status["dlq"] == len(BAD) == len(letters)
    originals = {(t, p, o): v for (t, p, o), v in zip(where, [b[2] for b in BAD], strict=True)}
    for letter in letters:
        at = (letter["topic"], letter["partition"], letter["offset"])
        assert letter["reason"] == where[at], letter
        assert letter["value"] == originals[at]  # the original bytes, untouched
        assert letter["key"] == record_key("dlq-app", "u1")
        assert letter["detail"]

    assert worker.poll() is None, "the worker must survive bad input"
    u1 = pipeline.cli_json("user", "dlq-app", "u1")
    u2 = pipeline.cli_json("user", "dlq-app", "u2")
    assert u1["overview"]["total_events"] + u2["overview"]["total_events"] == good
    assert u1["overview"]["total_events"] == len(BAD)
