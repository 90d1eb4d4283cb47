"""What the worker does, told two ways: Prometheus metrics on PROFILES_METRICS_PORT, and a
line in the log when its assignment changes and every PROGRESS_SECONDS while it has work.

The agents call `Metrics.done` once per batch and the worker's one-second timer calls `tick`
with the lag its consumer knows: nothing is counted per record but the topics of a batch and
the delays of its events (a bisect each, not prometheus_client's observe, which costs ~1 µs).
"""

from __future__ import annotations

import logging
import threading
import time
from bisect import bisect_left
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    start_http_server,
)
from prometheus_client.core import HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from projections.origins import Note
from projections.step import Positioned

log = logging.getLogger("profiles.worker")

PROGRESS_SECONDS = 10.0

BATCH_BUCKETS = (1, 10, 50, 100, 250, 500, 1000, 2000, 5000, 10_000, 20_000)
STEP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
# From a live event's fraction of a second to a backfill's days.
DELAY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 21600, 86400, 604800)

TP = tuple[str, int]  # (topic, partition): Faust's and aiokafka's TopicPartitions are these


class DelayHistogram(Collector):
    """`profiles_event_delay_seconds`, fed a batch at a time: one bisect per event into local
    counts, then one lock to add them (prometheus_client's Histogram locks per observe)."""

    name = "profiles_event_delay_seconds"
    help = (
        "Seconds from an event's own timestamp (a command's issued_at) to the end of the "
        "batch that applied it to the projections"
    )

    def __init__(self, buckets: Sequence[float] = DELAY_BUCKETS) -> None:
        self._bounds = tuple(buckets)
        self._bounds_ms = tuple(b * 1000 for b in buckets)
        self._counts = [0] * (len(buckets) + 1)  # the last one: above every bound (+Inf)
        self._sum_ms = 0
        self._lock = threading.Lock()  # the HTTP server's thread collects

    def observe_batch(self, now_ms: int, applied: Sequence[Positioned]) -> None:
        bounds, counts, total = self._bounds_ms, [0] * len(self._counts), 0
        for p in applied:
            r = p.record
            if isinstance(r, Note):
                continue  # a merge message: no time of its own
            at = r.issued_at if r.type == "command" else r.timestamp
            delay = now_ms - at
            if delay < 0:  # the sender's clock runs ahead (up to PROFILES_MAX_FUTURE_HOURS)
                delay = 0
            counts[bisect_left(bounds, delay)] += 1
            total += delay
        with self._lock:
            for i, n in enumerate(counts):
                self._counts[i] += n
            self._sum_ms += total

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            counts, sum_ms = list(self._counts), self._sum_ms
        running, buckets = 0, []
        for bound, n in zip((*self._bounds, float("inf")), counts, strict=True):
            running += n
            buckets.append((floatToGoString(bound), running))
        yield HistogramMetricFamily(self.name, self.help, buckets=buckets, sum_value=sum_ms / 1000)


class Metrics:
    """The worker's metrics (its own registry, not prometheus_client's global one) and the
    counts since the last progress line."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        for standard in (ProcessCollector, PlatformCollector, GCCollector):
            standard(registry=self.registry)  # process_*, python_info, python_gc_*
        reg = self.registry
        self._processed = Counter(
            "profiles_records_processed",
            "Records the worker is done with, by topic: applied to the projections, or "
            "dead-lettered (profiles_records_dead_lettered_total counts those again)",
            ["topic"],
            registry=reg,
        )
        self._dead = Counter(
            "profiles_records_dead_lettered",
            "Records sent to the dead-letter topic, by the topic they were read from",
            ["topic"],
            registry=reg,
        )
        self._batch = Histogram(
            "profiles_batch_size_records",
            "Records per batch, by step (users, companies, segments)",
            ["step"],
            buckets=BATCH_BUCKETS,
            registry=reg,
        )
        self._step = Histogram(
            "profiles_step_duration_seconds",
            "Seconds from a batch's start to its being applied (retries included), by step",
            ["step"],
            buckets=STEP_BUCKETS,
            registry=reg,
        )
        self._lag = Gauge(
            "profiles_consumer_lag_records",
            "Records not yet committed, by topic partition: the end offset the consumer last "
            "fetched minus the committed offset (sampled every second)",
            ["topic", "partition"],
            registry=reg,
        )
        self._assigned = Gauge(
            "profiles_assigned_partitions", "Topic partitions assigned to this worker", registry=reg
        )
        self.delays = DelayHistogram()
        reg.register(self.delays)
        # Children by label, so that a batch does not look its labels up each time.
        self._children: dict[tuple[Any, str], Any] = {}
        # Since the last progress line (the agents and the timer share the event loop).
        self._records = self._dead_records = self._batches = 0
        self._window_start = time.monotonic()
        self._last_line = self._window_start - PROGRESS_SECONDS  # the first line is due at once
        self._partitions: frozenset[TP] | None = None
        self._lag_series: set[TP] = set()

    def _child(self, metric: Any, label: str) -> Any:
        child = self._children.get((metric, label))
        if child is None:
            child = self._children[(metric, label)] = metric.labels(label)
        return child

    def done(
        self,
        step: str,
        messages: Sequence[Any],
        dead: Sequence[tuple[Any, bytes]],
        started: float,
        applied: Sequence[Positioned] = (),
    ) -> None:
        """A batch of `step` that began at `started` (time.monotonic) is applied: `messages`
        (Kafka messages), of which `dead` were dead-lettered and `applied` are the events."""
        self._child(self._step, step).observe(time.monotonic() - started)
        self._child(self._batch, step).observe(len(messages))
        if applied:
            self.delays.observe_batch(int(time.time() * 1000), applied)
        topics: dict[str, int] = {}
        for m in messages:
            topics[m.topic] = topics.get(m.topic, 0) + 1
        for topic, n in topics.items():
            self._child(self._processed, topic).inc(n)
        for m, _ in dead:
            self._child(self._dead, m.topic).inc()
        if not self._batches:
            self._window_start = started  # the next line's rate counts from the first batch
        self._records += len(messages)
        self._dead_records += len(dead)
        self._batches += 1

    def tick(self, lags: Mapping[TP, int | None]) -> None:
        """Once a second: `lags` of the assigned partitions (None: not known yet). Sets the
        lag gauges and writes the assignment line and the progress line when they are due."""
        partitions = frozenset((topic, partition) for topic, partition in lags)
        if partitions != self._partitions:
            self._partitions = partitions
            self._assigned.set(len(partitions))
            log.info("%s", assignment_line(partitions))
        known = {(t, p): lag for (t, p), lag in lags.items() if lag is not None}
        for gone in self._lag_series - known.keys():
            self._lag.remove(gone[0], str(gone[1]))
        for (topic, partition), lag in known.items():
            self._lag.labels(topic, str(partition)).set(lag)
        self._lag_series = set(known)
        lag = sum(known.values())
        now = time.monotonic()
        if not (self._records or lag) or now - self._last_line < PROGRESS_SECONDS:
            return  # idle, or a line is not due yet
        log.info(
            "%s",
            progress_line(
                self._records, self._batches, self._dead_records, now - self._window_start, lag
            ),
        )
        self._records = self._dead_records = self._batches = 0
        self._window_start = self._last_line = now

    def serve(self, port: int) -> int | None:
        """Serve /metrics on every interface at `port` from a thread of its own; the port,
        or None when it cannot listen there (one warning: the worker goes on without)."""
        disable_created_metrics()  # no *_created series: a process start time says as much
        try:
            server, _ = start_http_server(port, registry=self.registry)
        except OSError as exc:
            log.warning(
                "metrics not served: cannot listen on port %d (PROFILES_METRICS_PORT): %s",
                port,
                exc.strerror or exc,
            )
            return None
        return int(server.server_port)


def assignment_line(partitions: frozenset[TP]) -> str:
    """'assigned 9 partitions: p.track 0-3, p.page 0-3, p.segments 0'."""
    if not partitions:
        return "assigned no partitions"
    by_topic: dict[str, list[int]] = {}
    for topic, partition in sorted(partitions):
        by_topic.setdefault(topic, []).append(partition)
    parts = ", ".join(f"{topic} {ranges(numbers)}" for topic, numbers in by_topic.items())
    return f"assigned {len(partitions)} partition{'s' * (len(partitions) != 1)}: {parts}"


def ranges(numbers: list[int]) -> str:
    """[0, 1, 2, 5, 7, 8] -> '0-2,5,7-8' (numbers sorted)."""
    out: list[str] = []
    start = end = numbers[0]
    for n in [*numbers[1:], None]:
        if n is not None and n == end + 1:
            end = n
            continue
        out.append(str(start) if start == end else f"{start}-{end}")
        if n is not None:
            start = end = n
    return ",".join(out)


def progress_line(records: int, batches: int, dead: int, seconds: float, lag: int) -> str:
    """'processed 12,000 records in 8 batches over 10.0 s (1,200/s), 3 dead-lettered; lag 450'."""
    rate = records / seconds if seconds > 0 else 0.0
    return (
        f"processed {records:,} record{'s' * (records != 1)} in {batches:,} "
        f"batch{'es' * (batches != 1)} over {seconds:.1f} s ({rate:,.0f}/s), "
        f"{dead:,} dead-lettered; lag {lag:,}"
    )
