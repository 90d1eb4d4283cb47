"""SIGKILL the worker five times during ingest: nothing lost, nothing counted twice."""

from __future__ import annotations

from typing import Any

import pytest
from faultdata import assert_exact, dataset

# one xdist process runs every fault test: they share the private stack and restart it
pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("faults")]


def test_five_sigkills_during_ingest_lose_and_double_nothing(pipeline: Any) -> None:
    records, now_ms = dataset(seed=11)
    lag_at_kill = pipeline.ingest_with_kills(records, kills=5, seed=3)
    assert all(lag > 0 for lag in lag_at_kill), f"a kill came after the ingest: {lag_at_kill}"
    assert_exact(pipeline, records, now_ms)
