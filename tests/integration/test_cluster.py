"""Moving to a 3-master Redis Cluster and scaling out (issue 9): a pipeline on standalone
Redis moves to the cluster with `profiles replay`, workers join and leave the consumer group
while records arrive, and every view, segments and export equal the batch computation — the
same code as on standalone Redis, with PROFILES_REDIS_CLUSTER set."""

from __future__ import annotations

import json
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from compare import compare_companies, compare_users
from segmentkit import add, definitions, expected, settle

from schemas.generate import generate

pytestmark = pytest.mark.integration


def test_move_to_a_cluster_then_scale_out_and_every_view_is_exact(
    pipeline: Any, cluster_url: str, tmp_path: Path
) -> None:
    now_ms = int(time.time() * 1000)
    records = generate(
        users=150, days=21, end_ms=now_ms, seed=71, commands=True, duplicates=0.05, shuffle=True
    )
    app = Counter(r["app_id"] for r in records).most_common(1)[0][0]
    every = definitions(records, app)
    fifth = len(records) // 5
    parts = [records[i * fifth : (i + 1) * fifth if i < 4 else None] for i in range(5)]

    # One worker on standalone Redis takes the first part, then stops.
    alone = pipeline.start_worker()
    assert pipeline.publish_file(parts[0]).returncode == 0
    pipeline.wait_idle()
    pipeline.kill(alone, signal.SIGTERM)

    # The move (README, "Scaling out"): replay into the cluster, then workers on the cluster.
    pipeline.env |= {"PROFILES_REDIS_URL": cluster_url, "PROFILES_REDIS_CLUSTER": "true"}
    moved = pipeline.cli("replay", "--json")
    assert moved.exit_code == 0, moved.output
    assert json.loads(moved.stdout)["replayed"] == len(parts[0])
    first, second = pipeline.start_worker(), pipeline.start_worker()
    live = {sid: every[sid] for sid in sorted(every)[::2]}
    for d in live.values():  # a backfill over the cluster's slots
        add(pipeline, tmp_path, d)

    # The group changes while records keep arriving: each part lands on a different group.
    changes = [
        pipeline.start_worker,  # a third joins: the partitions are shared three ways
        lambda: pipeline.kill(second, signal.SIGTERM),  # one leaves cleanly
        lambda: pipeline.kill(pipeline.workers[-1], signal.SIGKILL),  # one dies mid-batch
        None,
    ]
    for part, change in zip(parts[1:], changes, strict=True):
        assert pipeline.publish_file(part).returncode == 0
        if change is not None:
            change()
    assert first.poll() is None

    settle(pipeline, records, app, live, killed=True)
    want = expected(records, app, live, int(time.time() * 1000))
    assert compare_users(pipeline, records, now_ms, segments=want) >= 130
    assert compare_companies(pipeline, records, now_ms, segments=want) >= 10

    # the other half of the definitions after the data
    for sid in sorted(every)[1::2]:
        add(pipeline, tmp_path, every[sid])
        live[sid] = every[sid]
    settle(pipeline, records, app, live, killed=True)
    sid = next(s for s, d in live.items() if d["scope"] == "user")
    exported = pipeline.cli("export", "users", app, "--segment", sid, "--format", "jsonl")
    rows = [json.loads(line) for line in exported.stdout.splitlines()]
    assert rows and sorted(r["user_id"] for r in rows) == pipeline.cli_json(
        "segments", "members", sid
    )
    verified = pipeline.cli("replay", "--verify")
    assert verified.exit_code == 0, verified.output
