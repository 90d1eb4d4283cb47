"""`profiles purge` on real Kafka and Redis: deleted users' erased records leave every topic,
nothing else does, the views stay the same live and after a replay, and an interrupted purge
is finished by the next one."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections import Counter
from typing import Any

import msgpack
import pytest
from aiokafka import AIOKafkaProducer
from pipelinekit import PROFILES

from replay.dlq import read_topic
from replay.purge import Kafka, erased_record
from schemas.generate import generate
from schemas.timefmt import parse_timestamp
from streams.kafka import client_options, ensure_topics
from streams.settings import Settings
from streams.topics import Topics, record_key

pytestmark = pytest.mark.integration

User = tuple[str, str]


# ---- the test's own reading of the log (independent of replay/purge.py) -----------------------


def owner(value: bytes | None) -> tuple[User, int, bool] | None:
    """(user, event time, is a delete command) of a record value, None when it names nobody."""
    try:
        raw = value or b""
        obj = json.loads(raw) if raw[:1] == b"{" else msgpack.unpackb(raw, raw=False)
        is_command = obj.get("type") == "command"
        at = parse_timestamp(obj["issued_at" if is_command else "timestamp"])
        user = (obj["app_id"], obj["user_id"])
        assert isinstance(user[0], str) and isinstance(user[1], str)
        return user, at, is_command and obj.get("command") == "delete"
    except Exception:
        return None


def expected_erased(key: bytes | None, value: bytes | None, deletes: dict[User, int]) -> bool:
    found = owner(value)
    if found is None:
        return key in {record_key(*u) for u in deletes}
    user, at, is_delete = found
    return user in deletes and at <= deletes[user] and not is_delete


def letter_erased(value: bytes, deletes: dict[User, int]) -> bool:
    letter = msgpack.unpackb(value, raw=False)
    try:
        delta = msgpack.unpackb(letter["value"], raw=False)
        if delta["type"] == "company_delta":  # a failed company delta: its users' member rows
            return any((delta["app_id"], p["user_id"]) in deletes for p in delta["parts"])
    except Exception:
        pass
    return expected_erased(letter["key"], letter["value"], deletes)


def read_log(settings: Settings) -> dict[str, list[Any]]:
    topics = Topics(settings.topic_prefix)
    return {t: asyncio.run(read_topic(settings, t)) for t in [*topics.sources, topics.dlq]}


def multiset(records: list[Any]) -> Counter[tuple[bytes | None, bytes | None]]:
    return Counter((r.key, r.value) for r in records)


def erased_split(
    log: dict[str, list[Any]], dlq: str, deletes: dict[User, int]
) -> tuple[dict[str, Counter[Any]], dict[str, Counter[Any]]]:
    """Per topic: the (key, value) multiset a purge must remove, and the one it must keep."""
    gone: dict[str, Counter[Any]] = {}
    kept: dict[str, Counter[Any]] = {}
    for topic, records in log.items():
        gone[topic], kept[topic] = Counter(), Counter()
        for r in records:
            erased = (
                letter_erased(r.value, deletes)
                if topic == dlq
                else expected_erased(r.key, r.value, deletes)
            )
            (gone if erased else kept)[topic][(r.key, r.value)] += 1
    return gone, kept


def views(pipeline: Any, users: list[User], companies: list[User]) -> dict[Any, Any]:
    out: dict[Any, Any] = {}
    for app, user in users:
        out[("user", app, user)] = pipeline.cli_json("user", app, user)
        out[("sessions", app, user)] = pipeline.cli_json("sessions", app, user)
    for app, company in companies:
        out[("company", app, company)] = pipeline.cli_json("company", app, company)
    return out


def send_raw(settings: Settings, rows: list[tuple[str, bytes, bytes]]) -> None:
    """(topic, key, value) straight to Kafka: records `profiles publish` would refuse."""

    async def go() -> None:
        await ensure_topics(settings)
        producer = AIOKafkaProducer(**client_options(settings), acks="all")
        await producer.start()
        try:
            for topic, key, value in rows:
                await producer.send_and_wait(topic, value, key=key)
        finally:
            await producer.stop()

    asyncio.run(go())


def purge(pipeline: Any, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PROFILES, "purge", *args],
        env=pipeline.env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def deletes_of(records: list[dict[str, Any]]) -> dict[User, int]:
    out: dict[User, int] = {}
    for r in records:
        if r["type"] == "command" and r["command"] == "delete":
            user = (r["app_id"], r["user_id"])
            out[user] = max(out.get(user, 0), parse_timestamp(r["issued_at"]))
    return out


# ---- the whole procedure -----------------------------------------------------------------------


def test_purge_removes_erased_records_and_nothing_else(pipeline: Any) -> None:
    timings: dict[str, float] = {}
    settings = pipeline.settings
    topics = Topics(settings.topic_prefix)
    end_ms = int(time.time() * 1000)
    records = generate(
        users=100, days=14, end_ms=end_ms, seed=7, commands=True, duplicates=0.03, shuffle=True
    )
    deletes = deletes_of(records)
    assert len(deletes) >= 2, deletes
    (app, victim), until = sorted(deletes.items())[0]
    other = next(
        r for r in records if r["type"] == "track" and (r["app_id"], r["user_id"]) not in deletes
    )
    track = topics.for_type("track")
    bad_field = {
        "type": "track",
        "app_id": app,
        "event_id": "bad-1",
        "timestamp": until - 60_000,
        "name": 123,  # invalid: dead-lettered with the record's bytes
    }
    send_raw(
        settings,
        [
            (track, record_key(app, victim), msgpack.packb({**bad_field, "user_id": victim})),
            (track, record_key(app, victim), b"\xc1garbage of a deleted user"),
            (
                track,
                record_key(*other_user(other)),
                msgpack.packb({**bad_field, "user_id": other["user_id"]}),
            ),
            (track, record_key(*other_user(other)), b"\xc1garbage of a kept user"),
        ],
    )
    pipeline.start_worker()
    assert pipeline.publish_file(records).returncode == 0
    pipeline.wait_idle()

    users = sorted({(r["app_id"], r["user_id"]) for r in records})
    companies = sorted(
        {
            (r["app_id"], r["company"]["id"])
            for r in records
            if r["type"] == "identify" and r.get("company")
        }
    )
    before_views = views(pipeline, users, companies)
    assert sum(v != ("exit", 3) for k, v in before_views.items() if k[0] == "company") >= 5
    before = read_log(settings)
    gone, kept = erased_split(before, topics.dlq, deletes)
    assert sum(gone[t].total() for t in topics.sources) > 20
    assert gone[topics.dlq].total() >= 2  # both letters under the victim's key
    purged = [u for _a, u in sorted(deletes)]

    # --dry-run counts exactly what a purge removes, and changes nothing
    dry = pipeline.cli("purge", app, *purged, "--dry-run", "--json")
    assert dry.exit_code == 0, dry.output
    summary = json.loads(dry.stdout)
    for topic in [*topics.sources, topics.dlq]:
        assert summary["topics"][topic] == {
            "removed": gone[topic].total(),
            "kept": kept[topic].total(),
        }, topic
    assert {t: multiset(rs) for t, rs in read_log(settings).items()} == {
        t: multiset(rs) for t, rs in before.items()
    }

    started = time.monotonic()
    done = purge(pipeline, app, *purged, "--json")
    timings["purge"] = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["removed"] > 0 and summary["refused"] == {}
    assert summary["topics"][topics.company_deltas]["removed"] > 0  # applied deltas truncated
    assert topics.purge_staging not in set(asyncio.run(topic_names(settings)))
    pipeline.wait_idle()

    after = read_log(settings)
    for topic in topics.sources:
        got = multiset(after[topic])
        # (1) + (3): exactly the records to keep are there, each once; none of the erased
        assert got == kept[topic], (topic, got - kept[topic], kept[topic] - got)
    # (2) no letter carries a purged user's key or erased record; the kept letters all are
    # there (a kept bad record re-read from a rewritten partition may add a second letter)
    letters = multiset(after[topics.dlq])
    assert not (kept[topics.dlq] - letters)
    for _key, value in letters:
        letter = msgpack.unpackb(value, raw=False)
        assert letter["key"] not in {record_key(*u) for u in deletes}
        assert not letter_erased(value, deletes)
    for user, t in deletes.items():

        def later(log: dict[str, list[Any]], user: User = user, t: int = t) -> int:
            found = (owner(r.value) for x in topics.sources for r in log[x])
            return sum(1 for o in found if o is not None and o[0] == user and o[1] > t)

        mine = [owner(r.value) for x in topics.sources for r in after[x]]
        assert all(o[1] > t or o[2] for o in mine if o is not None and o[0] == user)
        assert any(o[2] for o in mine if o is not None and o[0] == user), "its delete stays"
        assert later(after) == later(before) > 0, user  # its new profile's records all stay

    # a late record of the victim from before its delete, published after the purge
    late = {**next(r for r in records if r["type"] == "track" and r["user_id"] == victim)}
    late.update(event_id="late-after-purge", timestamp=until - 1, name="Late after purge")
    assert pipeline.publish_file([late]).returncode == 0
    pipeline.wait_idle()
    # (4) the live views have not changed
    assert views(pipeline, users, companies) == before_views

    # (5) a replay from the purged log gives the same views: nothing deleted comes back
    started = time.monotonic()
    replayed = subprocess.run(
        [PROFILES, "replay"], env=pipeline.env, capture_output=True, text=True, timeout=300
    )
    timings["replay"] = time.monotonic() - started
    assert replayed.returncode == 0, replayed.stderr
    assert views(pipeline, users, companies) == before_views

    # the late record is erased by the next purge: only it goes
    again = purge(pipeline, app, *purged, "--json")
    assert again.returncode == 0, again.stderr
    rows = json.loads(again.stdout)["topics"]
    assert {t: rows[t]["removed"] for t in topics.sources} == {
        t: (1 if t == track else 0) for t in topics.sources
    }
    pipeline.wait_idle()
    assert views(pipeline, users, companies) == before_views

    # (6) a user without a delete is refused: exit 1, one line, no traceback, nothing done
    refused = purge(pipeline, app, other["user_id"])
    assert refused.returncode == 1
    assert refused.stderr.strip().count("\n") == 0 and "refused" in refused.stderr
    assert "Traceback" not in refused.stderr
    print(f"timings: {timings}")


def other_user(record: dict[str, Any]) -> User:
    return (record["app_id"], record["user_id"])


async def topic_names(settings: Settings) -> list[str]:
    async with Kafka(settings, produce=False) as kafka:
        return list(await kafka.admin.list_topics())


# ---- crash safety ------------------------------------------------------------------------------


async def interrupt(settings: Settings, deletes: dict[User, int]) -> tuple[int, int]:
    """What a purge killed mid-way leaves behind: partition A staged, truncated and half
    produced again; partition B staged only. Returns (A's records still to produce, B's)."""
    topics = Topics(settings.topic_prefix)
    async with Kafka(settings, produce=True) as kafka:
        tps = await kafka.partitions(topics.sources)
        begins, ends = await kafka.bounds(tps)
        affected = []
        for tp in tps:
            records = await kafka.read(tp, begins[tp], ends[tp])
            keep = [
                (r, list(r.headers)) for r in records if not erased_record(r.value, r.key, deletes)
            ]
            if len(keep) < len(records) and len(keep) >= 2:
                affected.append((tp, keep))
        assert len(affected) >= 2
        await kafka.create_staging(topics.purge_staging)
        for n, (tp, keep) in enumerate(affected[:2]):
            tags = [
                ("profiles-purge-topic", tp.topic.encode()),
                ("profiles-purge-partition", str(tp.partition).encode()),
                ("profiles-purge-end", str(ends[tp]).encode()),
            ]
            await kafka.produce(topics.purge_staging, 0, [(r, [*h, *tags]) for r, h in keep])
            if n == 0:
                from aiokafka.admin.records_to_delete import RecordsToDelete

                await kafka.admin.delete_records({tp: RecordsToDelete(ends[tp])})
                await kafka.produce(tp.topic, tp.partition, keep[: len(keep) // 2])
        return len(affected[0][1]) - len(affected[0][1]) // 2, len(affected[1][1])


def test_purge_finishes_an_interrupted_purge(pipeline: Any) -> None:
    settings = pipeline.settings
    topics = Topics(settings.topic_prefix)
    end_ms = int(time.time() * 1000)
    records = generate(users=100, days=7, end_ms=end_ms, seed=3, commands=True)
    deletes = deletes_of(records)
    pipeline.start_worker()
    assert pipeline.publish_file(records).returncode == 0
    pipeline.wait_idle()
    before = read_log(settings)
    _gone, kept = erased_split(before, topics.dlq, deletes)

    missing, _untouched = asyncio.run(interrupt(settings, deletes))
    app = next(iter(deletes))[0]
    done = purge(pipeline, app, *[u for _a, u in sorted(deletes)], "--json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["interrupted_purge_found"]
    assert summary["restored_from_staging"] == missing  # only what had not arrived yet
    pipeline.wait_idle()
    after = read_log(settings)
    for topic in topics.sources:
        got = multiset(after[topic])
        assert got == kept[topic], (topic, got - kept[topic], kept[topic] - got)
    assert topics.purge_staging not in set(asyncio.run(topic_names(settings)))
    # nothing left to remove: the text summary says so per topic
    again = pipeline.cli("purge", app, *[u for _a, u in sorted(deletes)], "--dry-run")
    assert again.exit_code == 0, again.output
    for topic in topics.sources:
        assert f"{topic}: would remove 0, kept {kept[topic].total()}" in again.stdout
