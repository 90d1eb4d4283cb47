"""`profiles dlq list|show|redrive` on a real pipeline: inspect dead letters by reason, fix the
limit, redrive one reason, and the records land with their original event time, once."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from typing import Any

import msgpack
import pytest
from aiokafka import AIOKafkaProducer

from schemas.timefmt import format_ms
from streams.kafka import client_options, ensure_topics
from streams.topics import Topics, record_key

pytestmark = pytest.mark.integration

APP = "dlq-tools"
USER = "u-long"


def pack(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def track(eid: str, ts: int, **extra: Any) -> dict[str, Any]:
    return {
        "type": "track",
        "app_id": APP,
        "user_id": USER,
        "event_id": eid,
        "timestamp": ts,
        "name": "Exported report",
        **extra,
    }


async def produce(settings: Any, values: list[tuple[str, bytes]]) -> list[tuple[str, int, int]]:
    """Send (record type, value) pairs keyed by the user; return where each one landed."""
    topics = Topics(settings.topic_prefix)
    await ensure_topics(settings)
    producer = AIOKafkaProducer(**client_options(settings), acks="all", enable_idempotence=True)
    await producer.start()
    try:
        out = []
        for kind, value in values:
            meta = await producer.send_and_wait(
                topics.for_type(kind), value, key=record_key(APP, USER)
            )
            out.append((meta.topic, meta.partition, meta.offset))
        return out
    finally:
        await producer.stop()


def cli_ok(pipeline: Any, *args: str) -> Any:
    result = pipeline.cli(*args)
    assert result.exit_code == 0, (args, result.output)
    return json.loads(result.stdout) if "--json" in args else result.stdout


def test_list_show_and_redrive_after_raising_a_limit(pipeline: Any) -> None:
    now = int(time.time() * 1000)
    t_good, t_long1, t_long2, t_bad = now - 3_600_000, now - 1_800_000, now - 600_000, now - 60_000
    long1 = pack(track("long-1", t_long1, properties={"note": "x" * 9000}))
    long2 = pack(track("long-2", t_long2, properties={"note": "y" * 12000}))
    bad_field = [pack(track(f"bad-{i}", t_bad, name=123)) for i in range(2)]
    garbage = b"\xc1\xff\x00garbage"
    sent = [
        ("track", pack(track("good-1", t_good))),
        ("track", long1),
        ("track", bad_field[0]),
        ("track", long2),
        ("page", garbage),
        ("track", bad_field[1]),
    ]

    worker = pipeline.start_worker()
    where = asyncio.run(produce(pipeline.settings, sent))
    status = pipeline.wait_idle()
    assert status["dlq"] == 5

    before = pipeline.cli_json("user", APP, USER)
    assert before["overview"]["total_events"] == 1
    assert before["last_seen_at"] == format_ms(t_good)

    # -- list: counts by reason, source topics, failure times
    listing = cli_ok(pipeline, "dlq", "list", "--json")
    track_topic = Topics(pipeline.settings.topic_prefix).for_type("track")
    page_topic = Topics(pipeline.settings.topic_prefix).for_type("page")
    assert listing["total"] == 5
    reasons = listing["reasons"]
    assert {r: v["count"] for r, v in reasons.items()} == {
        "string_too_long": 2,
        "invalid_field": 2,
        "invalid_msgpack": 1,
    }
    assert reasons["string_too_long"]["topics"] == {track_topic: 2}
    assert reasons["invalid_msgpack"]["topics"] == {page_topic: 1}
    for row in reasons.values():
        assert row["redriven"] == 0
        assert row["first_failed_at"] <= row["last_failed_at"]
        assert row["first_failed_at"].endswith("Z")
    assert "string_too_long: 2" in cli_ok(pipeline, "dlq", "list")

    # -- show: the original bytes and the source coordinates
    shown = cli_ok(pipeline, "dlq", "show", "--reason", "string_too_long", "--json")
    assert len(shown) == 2
    by_value = {base64.b64decode(v["value"]): v for v in shown}
    assert set(by_value) == {long1, long2}
    for value, coords in ((long1, where[1]), (long2, where[3])):
        v = by_value[value]
        assert (v["topic"], v["partition"], v["offset"]) == coords
        assert v["reason"] == "string_too_long" and v["detail"]
        assert v["key"] == f"{APP}:{USER}"
        assert v["redriven"] is False
    assert len(cli_ok(pipeline, "dlq", "show", "--limit", "3", "--json")) == 3
    text = cli_ok(pipeline, "dlq", "show", "--reason", "invalid_msgpack")
    assert "\\xc1\\xff\\x00garbage" in text and "invalid_msgpack" in text

    # -- the fix: a worker with a raised string limit
    pipeline.kill(worker)
    pipeline.env["PROFILES_MAX_STRING_BYTES"] = "20000"
    pipeline.start_worker()

    dry = cli_ok(pipeline, "dlq", "redrive", "--reason", "string_too_long", "--dry-run", "--json")
    assert dry["redriven"] == {"string_too_long": 2} and dry["dry_run"] is True
    first = cli_ok(pipeline, "dlq", "redrive", "--reason", "string_too_long", "--json")
    assert first["redriven"] == {"string_too_long": 2}
    assert first["already_redriven"] == {} and first["refused"] == {}
    status = pipeline.wait_idle()

    after = pipeline.cli_json("user", APP, USER)
    assert after["overview"]["total_events"] == 3  # the redriven records now count
    assert after["last_seen_at"] == format_ms(t_long2)  # ... with their own event time
    assert after["first_seen_at"] == format_ms(t_good)
    assert status["dlq"] == 5  # accepted this time: no new letters

    # -- nothing is redriven twice; the other reasons were left alone
    again = cli_ok(pipeline, "dlq", "redrive", "--reason", "string_too_long", "--json")
    assert again["redriven"] == {} and again["already_redriven"] == {"string_too_long": 2}
    assert "redriven 0 letters" in cli_ok(pipeline, "dlq", "redrive", "--reason", "string_too_long")
    assert pipeline.status()["groups"][0]["processed"] == status["groups"][0]["processed"]
    listing = cli_ok(pipeline, "dlq", "list", "--json")
    assert {r: v["redriven"] for r, v in listing["reasons"].items()} == {
        "string_too_long": 2,
        "invalid_field": 0,
        "invalid_msgpack": 0,
    }
    shown = cli_ok(pipeline, "dlq", "show", "--reason", "string_too_long", "--json")
    assert all(v["redriven"] for v in shown)
    rest = cli_ok(pipeline, "dlq", "redrive", "--dry-run", "--json")
    assert rest["redriven"] == {"invalid_field": 2, "invalid_msgpack": 1}
    assert rest["already_redriven"] == {"string_too_long": 2}
    assert pipeline.cli_json("user", APP, USER)["overview"]["total_events"] == 3


def test_letters_from_other_topics_are_refused(pipeline: Any) -> None:
    settings = pipeline.settings
    topics = Topics(settings.topic_prefix)
    forged = pack(
        {
            "reason": "forged",
            "detail": "not from a source topic",
            "topic": topics.company_deltas,
            "partition": 0,
            "offset": 7,
            "key": b"k",
            "value": b"v",
            "failed_at": int(time.time() * 1000),
        }
    )

    async def put() -> None:
        await ensure_topics(settings)
        producer = AIOKafkaProducer(**client_options(settings), acks="all")
        await producer.start()
        try:
            await producer.send_and_wait(topics.dlq, forged, key=b"k")
        finally:
            await producer.stop()

    asyncio.run(put())
    result = pipeline.cli("dlq", "redrive", "--reason", "forged")
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "refused 1 letters" in lines[0], result.stderr
    assert topics.company_deltas in lines[0]
    listing = pipeline.cli_json("dlq", "list")
    assert listing["reasons"]["forged"]["redriven"] == 0
    assert pipeline.cli("dlq", "show", "--reason", "nothing-like-this").stdout.startswith(
        "no dead letters"
    )


def test_a_redrive_stopped_between_its_markers_resumes_without_doubles(pipeline: Any) -> None:
    """Two letters of a redrive that died after its `sending` markers: one had been delivered,
    one not. The next redrive sends only the second, and each record is there exactly once."""
    from replay.dlq import HEADER, encode_marker, parse_letter, read_topic, redrive_log

    settings = pipeline.settings
    topics = Topics(settings.topic_prefix)
    track_topic = topics.for_type("track")

    def letter(offset: int) -> bytes:
        return pack(
            {
                "reason": "string_too_long",
                "detail": "d",
                "topic": track_topic,
                "partition": 0,
                "offset": offset,
                "key": b"k",
                "value": f"value-{offset}".encode(),
                "failed_at": int(time.time() * 1000),
            }
        )

    async def crash_half_way() -> None:
        await ensure_topics(settings)
        producer = AIOKafkaProducer(**client_options(settings), acks="all")
        await producer.start()
        try:
            metas = [
                await producer.send_and_wait(topics.dlq, letter(o), partition=0) for o in (1, 2)
            ]
            letters = [
                parse_letter(m.partition, m.offset, letter(o))
                for m, o in zip(metas, (1, 2), strict=True)
            ]
            for x in letters:  # 1. `sending` markers
                await producer.send_and_wait(
                    redrive_log(settings),
                    encode_marker(x, "sending", 0, 0),
                    key=x.coordinates.encode(),
                )
            delivered = letters[0]  # 2. only the first record got out before the "crash"
            await producer.send_and_wait(
                track_topic,
                delivered.value,
                key=delivered.key,
                partition=0,
                headers=[(HEADER, f"{topics.dlq}:{delivered.coordinates}".encode())],
            )
        finally:
            await producer.stop()

    asyncio.run(crash_half_way())
    dry = cli_ok(pipeline, "dlq", "redrive", "--dry-run", "--json")
    assert dry["redriven"] == {"string_too_long": 1}
    assert dry["already_redriven"] == {"string_too_long": 1}
    resumed = cli_ok(pipeline, "dlq", "redrive", "--json")
    assert resumed["redriven"] == {"string_too_long": 1}
    assert resumed["already_redriven"] == {"string_too_long": 1}
    assert cli_ok(pipeline, "dlq", "redrive", "--json")["redriven"] == {}

    values = [r.value for r in asyncio.run(read_topic(settings, track_topic))]
    assert sorted(values) == [b"value-1", b"value-2"]
    listing = cli_ok(pipeline, "dlq", "list", "--json")
    assert listing["reasons"]["string_too_long"]["redriven"] == 2
