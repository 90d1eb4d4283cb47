"""What the worker does with projections it must not write on (issue 17, points 3, 5 and 7):
a namespace of another state format, a namespace whose marker is gone (a Redis, or one
master of a cluster, that came back empty), a stored state it cannot read. It stops with
its documented exit code and one line, and acks nothing of the batch in hand."""

from __future__ import annotations

import signal
import subprocess
import time
from typing import Any

import pytest
from compare import compare_companies, compare_users
from pipelinekit import PROFILES

from projections import keys, namespaces
from schemas.generate import generate

pytestmark = pytest.mark.integration

LOST, FAILED, FORMAT = 4, 5, 6


def _track(user: str, i: int, now_ms: int) -> dict[str, Any]:
    return {
        "type": "track",
        "app_id": "acme",
        "user_id": user,
        "event_id": f"{user}-{i}",
        "timestamp": now_ms - 3_600_000 + i * 1000,
        "name": "Report Created",
    }


def _start(pipeline: Any, records: list[dict[str, Any]]) -> subprocess.Popen[bytes]:
    worker = pipeline.start_worker()
    assert pipeline.publish_file(records).returncode == 0
    pipeline.wait_idle()
    return worker


def _worker_once(pipeline: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PROFILES, "worker"], env=pipeline.env, capture_output=True, text=True, timeout=120
    )


def _log(pipeline: Any, n: int) -> str:
    return str((pipeline.tmp / f"worker-{n}.log").read_text(errors="replace"))


def test_a_namespace_of_another_format_is_not_written(pipeline: Any) -> None:
    redis = pipeline.redis()
    base = pipeline.settings.namespace
    redis.set(keys.pointer(base), namespaces.Pointer(base).encode())  # as an older version left
    done = _worker_once(pipeline)
    assert done.returncode == FORMAT
    assert done.stderr.count("\n") == 1 and "profiles replay" in done.stderr, done.stderr
    assert "format 1" in done.stderr
    redis.hset(keys.meta(base), mapping={"format": str(namespaces.FORMAT + 1)})
    done = _worker_once(pipeline)
    assert done.returncode == FORMAT and f"format {namespaces.FORMAT + 1}" in done.stderr


def test_a_lost_marker_stops_the_worker_before_it_writes(pipeline: Any) -> None:
    now_ms = int(time.time() * 1000)
    worker = _start(pipeline, [_track("u1", i, now_ms) for i in range(3)])
    redis = pipeline.redis()
    base = pipeline.settings.namespace
    # As one master of a cluster that came back empty: its slots' markers are gone, the
    # pointer (on another master) is still there.
    assert redis.delete(keys.marker(base, "0")) == 1
    before = pipeline.status()["groups"][0]["processed"]
    assert pipeline.publish_file([_track("u2", 0, now_ms)]).returncode == 0
    assert worker.wait(timeout=60) == LOST
    pipeline.workers.remove(worker)
    assert "Redis has lost the projections" in _log(pipeline, 0)
    assert not redis.exists(keys.user(base, "acme", "u2")), "wrote on an unmarked namespace"
    assert pipeline.status()["groups"][0]["processed"] == before  # nothing acked
    again = _worker_once(pipeline)
    assert again.returncode == LOST and again.stderr.count("\n") == 1, again.stderr


def test_a_state_it_cannot_read_stops_the_worker_with_the_batch_unacked(pipeline: Any) -> None:
    now_ms = int(time.time() * 1000)
    worker = _start(pipeline, [_track("u1", i, now_ms) for i in range(3)])
    redis = pipeline.redis()
    key = keys.user(pipeline.settings.namespace, "acme", "u1")
    good = redis.hget(key, keys.INDEX)
    redis.hset(key, keys.INDEX, b"\xc1 damaged")
    before = pipeline.status()["groups"][0]["processed"]
    assert pipeline.publish_file([_track("u1", 9, now_ms)]).returncode == 0
    assert worker.wait(timeout=60) == FAILED
    pipeline.workers.remove(worker)
    log = _log(pipeline, 0)
    assert "cannot be retried" in log and "Unreadable" in log, log[-2000:]
    assert pipeline.status()["groups"][0]["processed"] == before  # the record waits in Kafka
    redis.hset(key, keys.INDEX, good)  # the operator repairs it (here: puts it back)
    pipeline.start_worker()
    pipeline.wait_idle()
    assert pipeline.cli_json("user", "acme", "u1")["overview"]["total_events"] == 4


def test_a_namespace_of_an_older_format_is_rebuilt_without_loss(pipeline: Any) -> None:
    """An upgrade that changes the state format: the worker refuses the namespace (exit 6),
    `profiles replay` builds one in the new format, and every view comes back exact."""
    end_ms = int(time.time() * 1000)
    records = generate(users=30, days=10, end_ms=end_ms, seed=66, commands=True, shuffle=True)
    worker = _start(pipeline, records)
    pipeline.kill(worker, signal.SIGTERM)
    base = pipeline.settings.namespace
    pipeline.redis().hset(keys.meta(base), "format", "2")  # as the version before left it
    refused = _worker_once(pipeline)
    assert refused.returncode == FORMAT and "format 2" in refused.stderr, refused.stderr
    replay = subprocess.run(
        [PROFILES, "replay"], env=pipeline.env, capture_output=True, text=True, timeout=300
    )
    assert replay.returncode == 0, replay.stderr
    pipeline.start_worker()
    pipeline.wait_idle()
    assert compare_users(pipeline, records, end_ms) >= 20
    assert compare_companies(pipeline, records, end_ms) >= 3
