"""Identity merge (docs/design.md §7) on the real services: anonymous visitors who sign up,
some aliased late, some on two devices, one merge undone — published while the worker is
SIGKILLed three times; every view equals the batch reference, and a merged id answers with
the id it was merged into; `replay --verify` finds no difference, and after a replay the
views are the same."""

from __future__ import annotations

import time
from typing import Any

import pytest
import reference as ref
from compare import compare_companies, compare_users

from schemas.generate import generate

pytestmark = pytest.mark.integration


def test_a_wave_of_aliases_through_worker_kills_gives_the_batch_answer(pipeline: Any) -> None:
    now_ms = int(time.time() * 1000)
    records = generate(
        users=40, days=14, end_ms=now_ms, seed=22, commands=True, anonymous=0.6, shuffle=True
    )
    aliases = [r for r in records if r["type"] == "alias"]
    assert len(aliases) >= 15
    assert any(r["type"] == "command" and r["command"] == "unmerge" for r in records)

    lag_at_kill = pipeline.ingest_with_kills(records, kills=3, seed=5)
    assert all(lag > 0 for lag in lag_at_kill), f"a kill came after the ingest: {lag_at_kill}"
    status = pipeline.wait_idle()
    assert status["dlq"] == 0
    assert compare_users(pipeline, records, now_ms) >= 20
    assert compare_companies(pipeline, records, now_ms) >= 3

    merged = sorted({r["previous_id"] for r in aliases})
    app = aliases[0]["app_id"]
    roots = [ref.merged_into(records, app, p) for p in merged]
    assert sum(root is not None for root in roots) >= 10
    for previous, root in zip(merged, roots, strict=True):
        result = pipeline.cli("user", app, previous)
        if root is not None:
            assert result.exit_code == 3, result.stdout
            assert result.stderr.strip().endswith(f"was merged into {root!r}"), result.stderr

    verify = pipeline.cli("replay", "--verify", "--json")
    assert verify.exit_code == 0, verify.output
    assert verify.stdout.strip().endswith("[]"), verify.stdout[-2000:]
    replayed = pipeline.cli("replay", "--json")
    assert replayed.exit_code == 0, replayed.output
    assert compare_users(pipeline, records, now_ms) >= 20
    assert compare_companies(pipeline, records, now_ms) >= 3


def test_merges_on_a_redis_cluster_with_two_workers(pipeline: Any, cluster_url: str) -> None:
    """Ids and their roots in other slots and, with two workers, in other processes."""
    pipeline.env |= {"PROFILES_REDIS_URL": cluster_url, "PROFILES_REDIS_CLUSTER": "true"}
    now_ms = int(time.time() * 1000)
    records = generate(
        users=30, days=10, end_ms=now_ms, seed=23, commands=True, anonymous=0.7, shuffle=True
    )
    assert sum(r["type"] == "alias" for r in records) >= 15
    pipeline.start_worker()
    pipeline.start_worker()
    assert pipeline.publish_file(records).returncode == 0
    status = pipeline.wait_idle()
    assert status["dlq"] == 0
    assert compare_users(pipeline, records, now_ms) >= 15
    assert compare_companies(pipeline, records, now_ms) >= 3
