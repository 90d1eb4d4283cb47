"""A second worker joins and leaves twice during ingest: the partitions move between them
(rebalances) and nothing is lost or counted twice."""

from __future__ import annotations

import signal
from typing import Any

import pytest
from faultdata import assert_exact, dataset

pytestmark = pytest.mark.integration


def test_workers_joining_and_leaving_mid_stream(pipeline: Any) -> None:
    records, now_ms = dataset(seed=31)
    published = pipeline.publish_file(records)
    assert published.returncode == 0, published.stderr
    pipeline.start_worker()
    lags = []
    for step in range(2):
        lags.append(pipeline.wait_processed(len(records) * (1 + 2 * step) // 6))
        second = pipeline.start_worker()
        lags.append(pipeline.wait_processed(len(records) * (2 + 2 * step) // 6))
        pipeline.kill(second, signal.SIGTERM)  # a clean leave: its partitions move back
    assert all(lag > 0 for lag in lags), f"a rebalance came after the ingest: {lags}"
    assert_exact(pipeline, records, now_ms)
