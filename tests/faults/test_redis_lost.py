"""Redis loses everything (restarted without its data): the worker stops and says how to
rebuild, refuses to start on the empty Redis, and `profiles replay` brings every view back."""

from __future__ import annotations

import shutil
import signal
import subprocess
from typing import Any

import pytest
from faultdata import assert_exact, dataset
from pipelinekit import PROFILES

# one xdist process runs every fault test: they share the private stack and restart it
pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("faults")]

LOST = 4  # the worker's exit code when the projections are gone


def test_a_worker_on_a_redis_that_lost_its_data_stops_and_replay_rebuilds(
    pipeline: Any, stack: Any
) -> None:
    records, now_ms = dataset(seed=41, users=100)
    # small batches: the ingest outlasts several offset commits, so a third comes mid-ingest
    pipeline.env["PROFILES_BATCH_SIZE"] = "50"
    published = pipeline.publish_file(records)
    assert published.returncode == 0, published.stderr
    worker = pipeline.start_worker()
    assert pipeline.wait_processed(len(records) // 3) > 0

    stack.stop("redis", signal.SIGKILL)
    shutil.rmtree(stack.root / "redis" / "data")  # the AOF too: everything is gone
    stack.services("up")

    # Writing on would build views from the records after the committed offsets only.
    assert worker.wait(timeout=120) == LOST
    log = (pipeline.tmp / "worker-0.log").read_text()
    assert "Redis has lost the projections" in log and "profiles replay" in log
    pipeline.workers.remove(worker)

    again = subprocess.run(
        [PROFILES, "worker"], env=pipeline.env, capture_output=True, text=True, timeout=120
    )
    assert again.returncode == LOST
    assert again.stderr.count("\n") == 1 and "profiles replay" in again.stderr, again.stderr

    replay = subprocess.run(
        [PROFILES, "replay"], env=pipeline.env, capture_output=True, text=True, timeout=600
    )
    assert replay.returncode == 0, replay.stderr
    pipeline.start_worker()
    assert_exact(pipeline, records, now_ms)
