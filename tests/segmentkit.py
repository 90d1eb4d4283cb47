"""Segments in end-to-end tests: definitions of every condition kind drawn from the data, and
the check that every profile's `segments` and every segment's members equal the batch answer."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import reference as ref
from aiokafka import AIOKafkaProducer

from projections.reader import Reader
from schemas.segments import parse_segment
from streams.kafka import client_options, ensure_topics
from streams.redis_clients import sync_client
from streams.topics import Topics


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
    pipeline: Any,
    records: list[dict[str, Any]],
    app: str,
    live: dict[str, dict[str, Any]],
    killed: bool = False,
) -> list[Any]:
    """Every profile's `segments` and every segment's members and count against the batch
    answer at this instant; [] when all agree.

    `killed`: a worker was killed mid-batch. A member count is a set cardinality, and a writer
    killed between its set moves and its commit can leave an extra entry in a set (listing
    checks each entry against the profile, so members stay exact): the count may then be
    higher, never lower (README, Segments)."""
    now_ms = int(time.time() * 1000)
    want = expected(records, app, live, now_ms)
    cfg = pipeline.settings
    reader = Reader(sync_client(cfg), cfg.namespace)
    out: list[Any] = []
    for (scope, entity_id), ids in sorted(want.items()):
        view = (reader.user if scope == "user" else reader.company)(app, entity_id)
        if view["segments"] != ids:
            out.append((scope, entity_id, view["segments"], ids))
    for sid in live:
        members = sorted(e for (scope, e), ids in want.items() if sid in ids)
        found = pipeline.cli_json("segments", "members", sid)
        shown = pipeline.cli_json("segments", "show", sid)
        count_ok = shown["members"] >= len(members) if killed else shown["members"] == len(members)
        if found != members or not count_ok or shown["state"] != "ready":
            out.append((sid, len(found), shown["members"], len(members)))
    return out


def settle(
    pipeline: Any,
    records: list[dict[str, Any]],
    app: str,
    live: dict[str, dict[str, Any]],
    killed: bool = False,
) -> None:
    """Lag 0, then the batch answer (a second of slack: the clock ticks once a second)."""
    pipeline.wait_idle()
    for _ in range(10):
        diff = differences(pipeline, records, app, live, killed)
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
