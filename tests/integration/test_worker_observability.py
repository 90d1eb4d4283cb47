"""What a worker tells its operators (issue 20, item 3): a log of plain lines, without the
spinner's terminal codes, that says which partitions it has and how its work goes; and
Prometheus metrics on PROFILES_METRICS_PORT. One worker, its output in a file as
`profiles worker > file` would have it, serves both tests: the metrics one scrapes it while it
runs, the log one stops it and reads all it wrote."""

from __future__ import annotations

import re
import signal
import socket
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from subprocess import Popen
from typing import Any

import pytest
from pipelinekit import Pipeline
from prometheus_client.parser import text_string_to_metric_families

from schemas.codec import encode
from schemas.generate import generate
from streams.topics import Topics, record_key

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("observability")]

BAD = b"\xc1 not msgpack"  # dead-lettered: invalid_msgpack
PROGRESS = re.compile(
    r"processed ([\d,]+) records? in [\d,]+ batch(?:es)? over [\d.]+ s \([\d,]+/s\), "
    r"([\d,]+) dead-lettered; lag [\d,]+$"
)


@dataclass
class Observed:
    pipeline: Pipeline
    worker: Popen[bytes]
    port: int
    sent: Counter[str]  # records per topic, the bad one included
    log: Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def observed(services: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Observed]:
    tmp = tmp_path_factory.mktemp("observability")
    pipeline = Pipeline(tmp)
    port = free_port()
    pipeline.env["PROFILES_METRICS_PORT"] = str(port)
    topics = Topics(pipeline.settings.topic_prefix)
    records = generate(users=3, days=2, end_ms=int(time.time() * 1000), seed=20)
    items = [
        (topics.for_type(r["type"]), record_key(r["app_id"], r["user_id"]), encode(r))
        for r in records
    ]
    items.append((topics.for_type("track"), b"obs-app:u-bad", BAD))
    sent = Counter(topic for topic, _, _ in items)
    try:
        worker = pipeline.start_worker()
        pipeline.produce(items)
        pipeline.wait_idle()
        yield Observed(pipeline, worker, port, sent, tmp / "worker-0.log")
    finally:
        pipeline.stop()


def scrape(port: int) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def named(samples: dict[Any, float], name: str) -> dict[frozenset[tuple[str, str]], float]:
    return {labels: value for (n, labels), value in samples.items() if n == name}


def by_topic(samples: dict[Any, float], name: str) -> dict[str, float]:
    return {dict(labels)["topic"]: value for labels, value in named(samples, name).items()}


def test_the_worker_serves_prometheus_metrics(observed: Observed) -> None:
    source = dict(observed.sent)
    track = Topics(observed.pipeline.settings.topic_prefix).for_type("track")
    deadline = time.monotonic() + 30
    while True:  # the lag is sampled every second: wait for a sample after the work
        samples = scrape(observed.port)
        lags = named(samples, "profiles_consumer_lag_records")
        if (lags and sum(lags.values()) == 0) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    processed = by_topic(samples, "profiles_records_processed_total")
    assert {t: processed.get(t) for t in source} == source
    assert by_topic(samples, "profiles_records_dead_lettered_total") == {track: 1}
    assert processed.get(f"{observed.pipeline.settings.topic_prefix}company-deltas", 0) > 0
    good = sum(source.values()) - 1
    assert named(samples, "profiles_event_delay_seconds_count") == {frozenset(): good}
    batches = named(samples, "profiles_batch_size_records_sum")
    assert batches[frozenset({("step", "users")})] == sum(source.values())
    steps = named(samples, "profiles_step_duration_seconds_count")
    assert steps[frozenset({("step", "users")})] >= 1
    assert {dict(labels)["topic"] for labels in lags} >= set(source)
    assert sum(lags.values()) == 0, lags
    assert named(samples, "profiles_assigned_partitions")[frozenset()] >= len(lags)
    assert named(samples, "process_cpu_seconds_total")  # the standard process metrics too


def test_the_log_says_what_the_worker_does_in_plain_lines(observed: Observed) -> None:
    deadline = time.monotonic() + 30
    while "] processed " not in observed.log.read_text(errors="replace"):
        assert time.monotonic() < deadline, observed.log.read_text(errors="replace")
        time.sleep(0.2)
    total = sum(by_topic(scrape(observed.port), "profiles_records_processed_total").values())
    observed.pipeline.kill(observed.worker, signal.SIGTERM)  # all it writes, at exit too
    assert observed.worker.returncode == 0
    raw = observed.log.read_bytes()
    assert b"\x1b" not in raw and b"\x08" not in raw, raw[:300]  # no cursor, colour, spinner
    lines = raw.decode().splitlines()
    assert all(re.match(r"\[\d{4}-\d\d-\d\d [\d:,]+\] \[\d+\] \[[A-Z]+\] ", li) for li in lines)
    messages = [li.split("] ", 3)[3] for li in lines]
    prefix = observed.pipeline.settings.topic_prefix
    assert messages[-1] == "worker stopped"
    ready = [m for m in messages if m.startswith("worker ready: ")]
    assert len(ready) == 1 and ready[0].endswith(f"; metrics on port {observed.port}"), messages
    assigned = [m for m in messages if m.startswith("assigned ")]
    assert assigned and f"{prefix}track 0-3" in assigned[0], messages
    progress = [PROGRESS.match(m) for m in messages if m.startswith("processed ")]
    assert progress and all(progress), messages
    # A line is due at once when work starts, then every 10 s: the last batches' line may
    # not be due yet when the worker stops.
    counted = sum(int(p.group(1).replace(",", "")) for p in progress if p)
    assert 0 < counted <= total
