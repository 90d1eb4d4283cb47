"""End to end on real Kafka and Redis: every user's CLI JSON equals the batch computation,
also when the worker is killed with SIGKILL in the middle of ingest."""

from __future__ import annotations

import random
import threading
import time
from typing import Any

import pytest
import reference as ref

from streams.generate import generate

pytestmark = pytest.mark.integration


def dataset(seed: int) -> tuple[list[dict[str, Any]], int]:
    end_ms = int(time.time() * 1000)
    records = generate(users=220, days=21, end_ms=end_ms, seed=seed, duplicates=0.05, shuffle=True)
    return records, end_ms


def compare_every_user(pipeline: Any, records: list[dict[str, Any]], now_ms: int) -> int:
    users = sorted(ref.user_ids(records, now_ms=now_ms))
    assert len(users) >= 200
    days = sorted({ref.day_of(ref.record_ms(r)) for r in records})
    frm, to = days[len(days) // 3], days[2 * len(days) // 3]
    by_user: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in records:  # the reference filters by user itself; grouping first only saves time
        by_user.setdefault((r["app_id"], r["user_id"]), []).append(r)
    mismatches = []
    for app, user in users:
        mine = by_user[(app, user)]
        expected = {
            "user": ref.user_view(mine, app, user, now_ms=now_ms),
            "user-period": ref.user_view(
                mine, app, user, now_ms=now_ms, frm=frm, to=to, search="e"
            ),
            "sessions": ref.sessions_view(mine, app, user, now_ms=now_ms),
            "sessions-period": ref.sessions_view(
                mine, app, user, now_ms=now_ms, frm=frm, to=to, limit=3
            ),
            "sentiment": ref.sentiment_view(mine, app, user, now_ms=now_ms),
            "engagement": ref.engagement_view(mine, app, user, now_ms=now_ms),
        }
        actual = {
            "user": pipeline.cli_json("user", app, user),
            "user-period": pipeline.cli_json(
                "user", app, user, "--from", frm, "--to", to, "--search", "e"
            ),
            "sessions": pipeline.cli_json("sessions", app, user),
            "sessions-period": pipeline.cli_json(
                "sessions", app, user, "--from", frm, "--to", to, "--limit", "3"
            ),
            "sentiment": pipeline.cli_json("sentiment", app, user),
            "engagement": pipeline.cli_json("engagement", app, user),
        }
        for view, value in expected.items():
            if actual[view] != value:
                mismatches.append((app, user, view))
    assert not mismatches, f"{len(mismatches)} views differ, first: {mismatches[:5]}"
    return len(users)


def test_every_user_equals_the_batch_computation(pipeline: Any) -> None:
    records, now_ms = dataset(seed=7)
    pipeline.start_worker()
    published = pipeline.publish_file(records)
    assert published.returncode == 0, published.stderr
    status = pipeline.wait_idle()
    assert status["dlq"] == 0
    assert status["groups"][0]["processed"] == len(records)
    compare_every_user(pipeline, records, now_ms)
    missing = pipeline.cli("user", records[0]["app_id"], "no-such-user")
    assert missing.exit_code == 3
    assert missing.stderr.count("\n") == 1 and "not found" in missing.stderr


def test_sigkill_during_ingest_loses_and_doubles_nothing(pipeline: Any) -> None:
    records, now_ms = dataset(seed=11)
    rng = random.Random(3)
    worker = pipeline.start_worker()
    publisher = threading.Thread(target=pipeline.publish_file, args=(records,))
    publisher.start()
    lag_at_kill = []
    processed = 0
    for _ in range(3):
        deadline = time.monotonic() + 120
        while pipeline.status()["groups"][0]["processed"] <= processed:  # wait for progress
            assert time.monotonic() < deadline, "the worker made no progress"
            time.sleep(0.2)
        time.sleep(rng.uniform(0.0, 1.0))  # then a random moment inside the ingest
        pipeline.kill(worker)
        status = pipeline.status()
        processed = status["groups"][0]["processed"]
        lag_at_kill.append(status["lag"])
        worker = pipeline.start_worker()
    publisher.join()
    status = pipeline.wait_idle()
    assert all(lag > 0 for lag in lag_at_kill), f"a kill came after the ingest: {lag_at_kill}"
    assert status["groups"][0]["processed"] == len(records)
    compare_every_user(pipeline, records, now_ms)
