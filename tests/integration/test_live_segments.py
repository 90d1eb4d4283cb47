"""Segments end to end on real Kafka and Redis (issue 6): definitions added before and after
ingest, one changed and one removed, give the batch answer for every profile and segment."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import reference as ref
from aiokafka import AIOKafkaProducer

from projections.reader import Reader
from schemas.segments import parse_segment
from streams.generate import generate
from streams.kafka import client_options, ensure_topics
from streams.topics import Topics

pytestmark = pytest.mark.integration


def _rule(*conditions: dict[str, Any], op: str = "and") -> dict[str, Any]:
    return {"op": op, "conditions": list(conditions)}


def definitions(records: list[dict[str, Any]], app: str) -> dict[str, dict[str, Any]]:
    """Segments of every condition kind, with values taken from the data so they bite."""
    mine = [r for r in records if r["app_id"] == app]
    tracks = Counter(r["name"] for r in mine if r["type"] == "track").most_common()
    pages = Counter(ref.page_key(r["url"]) for r in mine if r["type"] == "page").most_common()
    content = Counter(r["content_id"] for r in mine if r["type"] == "content").most_common()
    plans = sorted({r["traits"]["plan"] for r in mine if "plan" in r.get("traits", {})})
    name, page, content_id = tracks[0][0], pages[1][0], content[0][0]
    rules = {
        "busy": (
            "user",
            _rule({"kind": "number", "field": "total_sessions", "operator": "gte", "value": 4}),
        ),
        "recent-doers": (
            "user",
            _rule(
                {"kind": "time", "field": "last_seen_at", "within_days": 5},
                {"kind": "event", "name": name, "at_least": 2, "days": 7},
            ),
        ),
        "paying": (
            "user",
            _rule(
                {
                    "kind": "property",
                    "source": "company_properties",
                    "key": "plan",
                    "operator": "in",
                    "value": plans[1:],
                },
                {
                    "kind": "property",
                    "source": "properties",
                    "key": "email",
                    "operator": "contains",
                    "value": "a",
                },
                op="or",
            ),
        ),
        "onboarded": (
            "user",
            _rule(
                {"kind": "content", "content_id": content_id, "status": "completed"},
                _rule(
                    {"kind": "page", "page": page, "days": 14},
                    {"kind": "excluded", "value": False},
                ),
                op="or",
            ),
        ),
        "promoters": (
            "user",
            _rule({"kind": "number", "field": "nps_latest", "operator": "gte", "value": 8}),
        ),
        "old-guard": (
            "user",
            _rule(
                {"kind": "time", "field": "first_seen_at", "before_days": 10},
                {
                    "kind": "property",
                    "source": "auto_properties",
                    "key": "country",
                    "operator": "exists",
                },
            ),
        ),
        "big-companies": (
            "company",
            _rule(
                {"kind": "number", "field": "total_sessions", "operator": "gt", "value": 20},
                {"kind": "event", "name": name, "at_most": 1000, "days": 30},
            ),
        ),
        "plan-companies": (
            "company",
            _rule(
                {
                    "kind": "property",
                    "source": "properties",
                    "key": "plan",
                    "operator": "eq",
                    "value": plans[0],
                }
            ),
        ),
    }
    return {
        sid: {
            "id": sid,
            "app_id": app,
            "name": sid.replace("-", " ").title(),
            "scope": scope,
            "rule": rule,
        }
        for sid, (scope, rule) in rules.items()
    }


def expected(
    records: list[dict[str, Any]], app: str, live: dict[str, dict[str, Any]], now_ms: int
) -> dict[tuple[str, str], list[str]]:
    full = {sid: parse_segment(d).model_dump() for sid, d in live.items()}
    subjects = ref.segment_subjects(records, app, now_ms=now_ms)
    return {
        subject: sorted(
            sid
            for sid, d in full.items()
            if d["scope"] == subject[0] and ref.segment_member(d, raw, now_ms)
        )
        for subject, raw in subjects.items()
    }


def differences(
    pipeline: Any, records: list[dict[str, Any]], app: str, live: dict[str, dict[str, Any]]
) -> list[Any]:
    """Every profile's `segments` and every segment's members and count against the batch
    answer at this instant; [] when all agree."""
    now_ms = int(time.time() * 1000)
    want = expected(records, app, live, now_ms)
    cfg = pipeline.settings
    reader = Reader.from_url(cfg.redis_url, namespace=cfg.namespace)
    out: list[Any] = []
    for (scope, entity_id), ids in sorted(want.items()):
        view = (reader.user if scope == "user" else reader.company)(app, entity_id)
        if view["segments"] != ids:
            out.append((scope, entity_id, view["segments"], ids))
    for sid in live:
        members = sorted(e for (scope, e), ids in want.items() if sid in ids)
        found = pipeline.cli_json("segments", "members", sid)
        shown = pipeline.cli_json("segments", "show", sid)
        if found != members or shown["members"] != len(members) or shown["state"] != "ready":
            out.append((sid, len(found), shown["members"], len(members)))
    return out


def settle(
    pipeline: Any, records: list[dict[str, Any]], app: str, live: dict[str, dict[str, Any]]
) -> None:
    """Lag 0, then the batch answer (a second of slack: the clock ticks once a second)."""
    pipeline.wait_idle()
    for _ in range(10):
        diff = differences(pipeline, records, app, live)
        if not diff:
            return
        time.sleep(1)
    raise AssertionError(f"{len(diff)} differences, e.g. {diff[:5]}")


async def send_raw(cfg: Any, values: dict[str, bytes]) -> None:
    await ensure_topics(cfg)
    producer = AIOKafkaProducer(**client_options(cfg))
    await producer.start()
    try:
        for key, value in values.items():
            await producer.send_and_wait(Topics(cfg.topic_prefix).segments, value, key.encode())
    finally:
        await producer.stop()


def add(pipeline: Any, tmp: Path, definition: dict[str, Any], yaml: bool = False) -> str:
    path = tmp / f"{definition['id']}.{'yaml' if yaml else 'json'}"
    path.write_text(json.dumps(definition), encoding="utf-8")  # JSON is YAML too
    result = pipeline.cli("segments", "add", str(path), "--timeout", "120")
    assert result.exit_code == 0, result.output
    return result.stdout


def test_segments_before_and_after_ingest_give_the_batch_answer(
    pipeline: Any, tmp_path: Path
) -> None:
    now_ms = int(time.time() * 1000)
    records = generate(
        users=120, days=21, end_ms=now_ms, seed=11, commands=True, duplicates=0.05, shuffle=True
    )
    app = Counter(r["app_id"] for r in records).most_common(1)[0][0]
    every = definitions(records, app)
    ids = sorted(every)
    early, late = ids[::2], ids[1::2]
    pipeline.start_worker()

    # definitions that bypass the CLI's checks go to the DLQ with a reason, and nothing else
    bad = {"broken": b"{not json", "other-key": json.dumps(every[early[0]]).encode()}
    asyncio.run(send_raw(pipeline.settings, bad))

    live: dict[str, dict[str, Any]] = {}
    for sid in early:  # before any data: nothing to evaluate yet
        assert "0 profiles evaluated, 0 members" in add(pipeline, tmp_path, every[sid])
        live[sid] = every[sid]
    half = len(records) // 2
    assert pipeline.publish_file(records[:half]).returncode == 0
    for sid in late[:2]:  # in the middle of the data: a backfill of what is there
        add(pipeline, tmp_path, every[sid], yaml=True)
        live[sid] = every[sid]
    assert pipeline.publish_file(records[half:]).returncode == 0
    settle(pipeline, records, app, live)

    for sid in late[2:]:  # after the data
        out = add(pipeline, tmp_path, every[sid])
        assert int(out.split(": ", 1)[1].split(" profiles")[0]) >= 10, out  # the backfill
        live[sid] = every[sid]
    changed = {**every[early[0]], "rule": every[late[0]]["rule"], "scope": every[late[0]]["scope"]}
    add(pipeline, tmp_path, changed)
    live[early[0]] = changed
    removed = early[1]
    assert pipeline.cli("segments", "remove", removed).exit_code == 0
    del live[removed]
    settle(pipeline, records, app, live)
    assert pipeline.cli("segments", "show", removed).exit_code == 3

    # a replay sees the definitions too: a scratch rebuild agrees, then a real one flips
    verified = pipeline.cli("replay", "--verify")
    assert verified.exit_code == 0, verified.output
    assert pipeline.cli("replay").exit_code == 0
    settle(pipeline, records, app, live)

    # every segment bites: some members, not everybody
    want = expected(records, app, live, int(time.time() * 1000))
    for sid, d in live.items():
        scope_total = sum(1 for (scope, _e) in want if scope == d["scope"])
        count = sum(1 for ids in want.values() if sid in ids)
        assert 0 < count < scope_total, (sid, count, scope_total)

    letters = pipeline.cli_json("dlq", "list")
    assert letters["reasons"]["invalid_segment"]["count"] == 2, letters
    assert {r["id"] for r in pipeline.cli_json("segments", "list")} == set(live)

    # export users --segment: exactly the members, each once, parseable
    sid = next(s for s, d in live.items() if d["scope"] == "user")
    exported = pipeline.cli("export", "users", app, "--segment", sid, "--format", "jsonl")
    assert exported.exit_code == 0
    rows = [json.loads(line) for line in exported.stdout.splitlines()]
    assert sorted(r["user_id"] for r in rows) == pipeline.cli_json("segments", "members", sid)
    assert all(sid in r["segments"] for r in rows)
