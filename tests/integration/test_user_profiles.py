"""End to end on real Kafka and Redis: every user's CLI JSON equals the batch computation.
(Kills, restarts and rebalances mid-stream are in tests/faults.)"""

from __future__ import annotations

import time
from typing import Any

import pytest
from compare import compare_users

from schemas.generate import generate

pytestmark = pytest.mark.integration


def dataset(seed: int) -> tuple[list[dict[str, Any]], int]:
    end_ms = int(time.time() * 1000)
    records = generate(users=220, days=21, end_ms=end_ms, seed=seed, duplicates=0.05, shuffle=True)
    return records, end_ms


def test_every_user_equals_the_batch_computation(pipeline: Any) -> None:
    records, now_ms = dataset(seed=7)
    pipeline.start_worker()
    published = pipeline.publish_file(records)
    assert published.returncode == 0, published.stderr
    status = pipeline.wait_idle()
    assert status["dlq"] == 0
    assert status["groups"][0]["processed"] == len(records)
    assert len(status["groups"][0]["workers"]) == 1
    summary = pipeline.cli("status").stdout.splitlines()  # a summary; partitions when asked
    assert summary[0].endswith(f": 1 worker on 127.0.0.1, lag 0, processed {len(records)}")
    assert summary[1] == "  over 2 s: 0 records/s processed, 0 records/s arriving"
    assert summary[2] == "dead letters: 0" and len(summary) == 3, summary
    detailed = pipeline.cli("status", "--partitions").stdout
    assert detailed.count(" committed ") == sum(
        1 for r in status["groups"][0]["partitions"] if r["end"]
    )
    assert compare_users(pipeline, records, now_ms) >= 200
    missing = pipeline.cli("user", records[0]["app_id"], "no-such-user")
    assert missing.exit_code == 3
    assert missing.stderr.count("\n") == 1 and "not found" in missing.stderr
