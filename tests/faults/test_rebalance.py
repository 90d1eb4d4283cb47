"""A second worker joins and leaves twice while records arrive: the partitions move between
them (rebalances), and nothing is lost or counted twice."""

from __future__ import annotations

import signal
from typing import Any

import pytest
from faultdata import assert_exact, dataset

# one xdist process runs every fault test: they share the private stack and restart it
pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("faults")]


def test_workers_joining_and_leaving_mid_stream(pipeline: Any) -> None:
    records, now_ms = dataset(seed=31)
    pipeline.start_worker()
    second: list[Any] = []
    changes = [
        lambda: second.append(pipeline.start_worker()),  # joins: the partitions are shared
        lambda: pipeline.kill(second[-1], signal.SIGTERM),  # leaves: they move back
    ] * 2
    size = -(-len(records) // len(changes))
    lags = []
    for i, change in enumerate(changes):  # each part arrives around a change of the group
        published = pipeline.publish_file(records[i * size : (i + 1) * size])
        assert published.returncode == 0, published.stderr
        lags.append(pipeline.status()["lag"])
        change()
    assert sum(lag > 0 for lag in lags) >= 2, f"the group changed while idle: {lags}"
    assert_exact(pipeline, records, now_ms)
