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
from segmentkit import add, definitions, expected, send_raw, settle

from schemas.generate import generate

pytestmark = pytest.mark.integration


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
