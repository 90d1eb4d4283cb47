"""Restart redis-server (AOF on) and the Kafka broker in the middle of ingest: the worker
waits for them, and every view still equals the batch computation."""

from __future__ import annotations

import signal
from typing import Any

import pytest
from faultdata import assert_exact, dataset

# one xdist process runs every fault test: they share the private stack and restart it
pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("faults")]


def ingest_until(pipeline: Any, records: list[dict[str, Any]], fraction: float) -> int:
    """Publish everything, start a worker and return the lag once `fraction` is processed
    (in small batches: the ingest outlasts several offset commits, even on an idle machine)."""
    pipeline.env["PROFILES_BATCH_SIZE"] = "50"
    published = pipeline.publish_file(records)
    assert published.returncode == 0, published.stderr
    pipeline.start_worker()
    return int(pipeline.wait_processed(int(len(records) * fraction)))


def test_redis_killed_and_restarted_mid_stream(pipeline: Any, stack: Any) -> None:
    records, now_ms = dataset(seed=21)
    lag = ingest_until(pipeline, records, 0.3)
    stack.restart("redis", signal.SIGKILL, down_for=3.0)  # the AOF brings every write back
    assert lag > 0, "the restart came after the ingest"
    assert_exact(pipeline, records, now_ms)
    assert all(w.poll() is None for w in pipeline.workers), "the worker must wait, not die"


def test_kafka_stopped_and_restarted_mid_stream(pipeline: Any, stack: Any) -> None:
    records, now_ms = dataset(seed=22)
    lag = ingest_until(pipeline, records, 0.3)
    stack.restart("kafka", signal.SIGTERM, down_for=5.0)
    assert lag > 0, "the restart came after the ingest"
    assert_exact(pipeline, records, now_ms)
    assert all(w.poll() is None for w in pipeline.workers), "the worker must wait, not die"
