"""streams/metrics.py: what the counters, the delay histogram and the log lines say of the
batches they are told of (a real worker's: tests/integration/test_worker_observability.py)."""

from __future__ import annotations

import logging
import socket
import time
from types import SimpleNamespace
from typing import Any

import pytest

from projections.step import Positioned
from streams import metrics as m
from streams.metrics import Metrics, assignment_line, progress_line, ranges


def message(topic: str) -> Any:
    return SimpleNamespace(topic=topic)


def event(at_ms: int, kind: str = "track") -> Positioned:
    stamp = {"issued_at": at_ms} if kind == "command" else {"timestamp": at_ms}
    return Positioned(SimpleNamespace(type=kind, **stamp), "p.track", 0, 0)  # type: ignore[arg-type]


def value(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_a_batch_counts_its_records_by_topic_and_its_dead_letters_again() -> None:
    metrics = Metrics()
    batch = [message("p.track"), message("p.page"), message("p.track")]
    metrics.done("users", batch, [(batch[2], b"letter")], time.monotonic())
    metrics.done("companies", [message("p.company-deltas")], [], time.monotonic())
    assert value(metrics, "profiles_records_processed_total", topic="p.track") == 2
    assert value(metrics, "profiles_records_processed_total", topic="p.page") == 1
    assert value(metrics, "profiles_records_processed_total", topic="p.company-deltas") == 1
    assert value(metrics, "profiles_records_dead_lettered_total", topic="p.track") == 1
    assert value(metrics, "profiles_records_dead_lettered_total", topic="p.page") is None
    assert value(metrics, "profiles_batch_size_records_sum", step="users") == 3
    assert value(metrics, "profiles_step_duration_seconds_count", step="companies") == 1


def test_the_delay_histogram_buckets_each_event_of_a_batch() -> None:
    metrics = Metrics()
    now = int(time.time() * 1000)
    applied = [
        event(now - 30),  # 0.03 s
        event(now - 2_000),  # 2 s
        event(now + 60_000),  # a sender's clock ahead: no delay
        event(now - 3 * 86_400_000),  # a backfill: 3 days
        event(now - 700, "command"),  # its issued_at
    ]
    metrics.done("users", [message("p.track")] * len(applied), [], time.monotonic(), applied)
    name = "profiles_event_delay_seconds"
    assert value(metrics, f"{name}_count") == 5
    assert value(metrics, f"{name}_bucket", le="0.05") == 2
    assert value(metrics, f"{name}_bucket", le="1.0") == 3
    assert value(metrics, f"{name}_bucket", le="2.5") == 4
    assert value(metrics, f"{name}_bucket", le="86400.0") == 4
    assert value(metrics, f"{name}_bucket", le="+Inf") == 5
    assert value(metrics, f"{name}_sum") == pytest.approx(3 * 86_400 + 2.73, abs=0.1)


def test_the_lag_gauges_follow_the_assignment(caplog: pytest.LogCaptureFixture) -> None:
    metrics = Metrics()
    caplog.set_level(logging.INFO, "profiles")
    metrics.tick({("p.track", 0): 5, ("p.track", 1): None, ("p.page", 0): 0})
    assert value(metrics, "profiles_consumer_lag_records", topic="p.track", partition="0") == 5
    assert value(metrics, "profiles_consumer_lag_records", topic="p.track", partition="1") is None
    assert value(metrics, "profiles_assigned_partitions") == 3
    metrics.tick({("p.page", 0): 0})  # the others moved to another worker
    assert value(metrics, "profiles_consumer_lag_records", topic="p.track", partition="0") is None
    assert value(metrics, "profiles_assigned_partitions") == 1
    metrics.tick({("p.page", 0): 0})  # the same: no line
    assigned = [r.message for r in caplog.records if r.message.startswith("assigned")]
    assert assigned == [
        "assigned 3 partitions: p.page 0, p.track 0-1",
        "assigned 1 partition: p.page 0",
    ]


def test_a_progress_line_at_once_when_work_starts_then_every_ten_seconds(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = [1000.0]
    monkeypatch.setattr(m.time, "monotonic", lambda: clock[0])
    caplog.set_level(logging.INFO, "profiles")
    metrics = Metrics()

    def lines() -> list[str]:
        return [r.message for r in caplog.records if r.message.startswith("processed")]

    lags = {("p.track", 0): 0}
    for _ in range(3):  # idle: nothing to say
        clock[0] += 1
        metrics.tick(lags)
    metrics.done("users", [message("p.track")] * 100, [], clock[0] - 0.5)
    clock[0] += 1
    metrics.tick(lags)
    assert lines() == ["processed 100 records in 1 batch over 1.5 s (67/s), 0 dead-lettered; lag 0"]
    batch = [message("p.track")] * 10
    for _ in range(9):  # a batch a second: not due until 10 s after the last line; the
        # window starts with the first batch, which began 0.2 s before that line
        metrics.done("users", batch, [(batch[0], b"")], clock[0] - 0.2)
        clock[0] += 1
        metrics.tick({("p.track", 0): 40})
    assert len(lines()) == 1
    clock[0] += 1
    metrics.tick({("p.track", 0): 40})
    assert (
        lines()[1] == "processed 90 records in 9 batches over 10.2 s (9/s), 9 dead-lettered; lag 40"
    )
    clock[0] += 10  # no records, but a lag: the line says so (a stuck worker)
    metrics.tick({("p.track", 0): 40})
    assert (
        lines()[2] == "processed 0 records in 0 batches over 10.0 s (0/s), 0 dead-lettered; lag 40"
    )


def test_the_lines_in_words() -> None:
    assert ranges([0, 1, 2, 5, 7, 8]) == "0-2,5,7-8"
    assert ranges([3]) == "3"
    assert assignment_line(frozenset()) == "assigned no partitions"
    assert progress_line(1, 1, 0, 2.0, 1_234) == (
        "processed 1 record in 1 batch over 2.0 s (0/s), 0 dead-lettered; lag 1,234"
    )


def test_a_port_another_process_holds_is_a_warning_not_a_failure(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert Metrics().serve(port) is None
    assert "metrics not served: cannot listen on port" in caplog.text
