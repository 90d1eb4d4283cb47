"""A producer flood far above the worker's rate: the worker's memory stays bounded (it stops
fetching while its buffers are full and the backlog waits in Kafka), and nothing is lost."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import msgpack
import pytest
from compare import compare_users

from schemas.generate import generate
from streams.topics import Topics, record_key

# one xdist process runs every fault test: they share the private stack and restart it
pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("faults")]

BLOB = 7_900  # bytes of padding per track event: a flood of volume, not only of count


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")


class Sampler(threading.Thread):
    """The highest RSS of a process, sampled every 0.1 s until stopped."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak, self.done = pid, 0.0, threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.1):
            self.peak = max(self.peak, rss_mb(self.pid))


def raw(settings: Any, records: list[dict[str, Any]]) -> list[tuple[str, bytes, bytes]]:
    topics = Topics(settings.topic_prefix)
    return [
        (topics.for_type(r["type"]), record_key(r["app_id"], r["user_id"]), msgpack.packb(r))
        for r in records
    ]


def test_a_flood_leaves_the_worker_bounded_and_loses_nothing(pipeline: Any) -> None:
    end_ms = int(time.time() * 1000)
    records = generate(users=500, days=14, end_ms=end_ms, seed=51, duplicates=0.02, shuffle=True)
    for r in records:
        if r["type"] == "track":
            r["properties"] = {**r.get("properties", {}), "blob": "x" * BLOB}
    volume_mb = sum(len(msgpack.packb(r)) for r in records) / 2**20
    # Small batches, so the worker's buffers (two batches a stream) are far below the flood.
    pipeline.env |= {"PROFILES_BATCH_SIZE": "500", "PROFILES_BULK_BATCH_SIZE": "1000"}

    worker = pipeline.start_worker()
    warmup = records[:500]
    pipeline.produce(raw(pipeline.settings, warmup))
    pipeline.wait_idle()
    baseline = rss_mb(worker.pid)

    sampler = Sampler(worker.pid)
    sampler.start()
    seconds = pipeline.produce(raw(pipeline.settings, records[500:]))
    lag_after_flood = pipeline.status()["lag"]
    started = time.monotonic()
    status = pipeline.wait_idle(timeout=600)
    drained = time.monotonic() - started
    sampler.done.set()
    sampler.join()

    flood_rate = (len(records) - 500) / seconds
    worker_rate = lag_after_flood / drained
    growth = sampler.peak - baseline
    print(
        f"flood {len(records) - 500} records, {volume_mb:.0f} MB in {seconds:.1f} s "
        f"({flood_rate:.0f}/s); worker {worker_rate:.0f}/s; lag after the flood "
        f"{lag_after_flood}; RSS {baseline:.0f} MB -> peak {sampler.peak:.0f} MB"
    )
    # A flood: most of the backlog was still in Kafka when the producer stopped (the worker
    # drains a few thousand records a second meanwhile; its buffers hold a few thousand).
    assert lag_after_flood >= 0.5 * (len(records) - 500), "not a flood"
    # Bounded: the worker held well under half the backlog it was offered (its buffers: two
    # batches a stream, and aiokafka's fetches of at most 1 MB a partition).
    assert growth < volume_mb / 2, (growth, volume_mb)
    assert status["dlq"] == 0
    assert status["groups"][0]["processed"] == len(records)
    assert compare_users(pipeline, records, end_ms, every=10) >= 40
