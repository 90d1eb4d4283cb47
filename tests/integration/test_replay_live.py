"""A replay while records keep arriving: the live worker writes the namespace under
construction as well, and the rebuilt views must still hold every record, old and new."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from typing import Any

import pytest
import redis
from compare import compare_companies, compare_users
from pipelinekit import PROFILES

from projections import keys, namespaces
from schemas.generate import generate
from streams.publish import publish_records

pytestmark = pytest.mark.integration


def pointer(pipeline: Any) -> namespaces.Pointer:
    client = redis.Redis.from_url(pipeline.settings.redis_url)
    return namespaces.decode(
        client.get(keys.pointer(pipeline.settings.namespace)), pipeline.settings.namespace
    )


def publish(pipeline: Any, records: list[dict[str, Any]]) -> None:
    """In-process (the publisher's own code): a slice goes out in a fraction of a second."""
    report = asyncio.run(publish_records(records, pipeline.settings))
    assert sum(report.sent.values()) == len(records)


def test_a_replay_while_records_keep_arriving(pipeline: Any) -> None:
    end_ms = int(time.time() * 1000)
    records = generate(
        users=160, days=21, end_ms=end_ms, seed=61, commands=True, duplicates=0.05, shuffle=True
    )
    half = len(records) // 2
    before, during = records[:half], records[half:]
    # Shuffled: most users have records on both sides of the replay's start, so the live
    # worker writes users the rebuild has yet to fold their older records into.
    old_users = {(r["app_id"], r["user_id"]) for r in before}
    both = {(r["app_id"], r["user_id"]) for r in during} & old_users
    assert len(both) >= 0.9 * len(old_users)

    pipeline.start_worker()
    publish(pipeline, before)
    pipeline.wait_idle()
    base = pipeline.settings.namespace

    # Small rebuild batches stretch the rebuild of this small log over seconds, as a real
    # log's would take minutes: the slices below arrive while it runs.
    replay = subprocess.Popen(
        [PROFILES, "replay", "--json"],
        env={**pipeline.env, "PROFILES_BULK_BATCH_SIZE": "100"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while pointer(pipeline).next is None:  # the replay has pointed the worker at `next`
            assert replay.poll() is None, replay.communicate()
            assert time.monotonic() < deadline, "the replay did not start"
            time.sleep(0.02)
        slices = 16
        size = -(-len(during) // slices)
        published_during_rebuild, first, last = 0, time.monotonic(), 0.0
        for i in range(slices):
            if pointer(pipeline).next is not None:
                published_during_rebuild += 1
                last = time.monotonic()
            publish(pipeline, during[i * size : (i + 1) * size])
            if pointer(pipeline).next is not None:
                time.sleep(0.2)  # a slice every few live batches, while the rebuild runs
        out, err = replay.communicate(timeout=300)
    finally:
        if replay.poll() is None:
            replay.kill()
            replay.wait()
    assert replay.returncode == 0, err
    assert json.loads(out)["current"] == f"{base}-1"
    # The records kept arriving for seconds of the rebuild, many of the worker's batches.
    assert published_during_rebuild >= 3 and last - first >= 1.0, (first, last, err)
    assert pointer(pipeline) == namespaces.Pointer(f"{base}-1")

    pipeline.wait_idle()
    assert compare_users(pipeline, records, end_ms) >= 140
    assert compare_companies(pipeline, records, end_ms) >= 10
    verify = pipeline.cli("replay", "--verify", "--json")
    assert verify.exit_code == 0, verify.output
    assert verify.stdout.strip().endswith("[]"), verify.stdout[-2000:]
