"""Retention (issue 17): commands are accepted whatever their age, because the fold keeps them
forever; events older than the retention are not. And what Kafka must keep of each topic so
that a replay finds every record the views hold (no services)."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest

from schemas.codec import Rejected, decode, validate
from schemas.limits import DAY_MS, HOUR_MS, Limits
from schemas.models import Command
from streams.kafka import (
    FOREVER,
    TopicRetention,
    _retention_change,
    keeps_less,
    pipeline_topics,
    required_retention,
)
from streams.settings import Settings

NOW = 1_795_000_000_000  # 2026-11-18T08:26:40Z
L = Limits()  # retention 400 days, 24 h ahead


def command(issued_at: int, kind: str = "delete") -> dict[str, Any]:
    return {
        "type": "command",
        "app_id": "acme-app",
        "user_id": "u-1",
        "command_id": f"c-{issued_at}",
        "command": kind,
        "issued_at": issued_at,
    }


def event(timestamp: int) -> dict[str, Any]:
    return {
        "type": "track",
        "app_id": "acme-app",
        "user_id": "u-1",
        "event_id": f"e-{timestamp}",
        "timestamp": timestamp,
        "name": "Report Created",
    }


def reason(obj: dict[str, Any], limits: Limits = L) -> str | None:
    """The DLQ reason of validate() and of decode() on the msgpack bytes (the two agree)."""
    reasons = set()
    for check in (
        lambda: validate(obj, limits, NOW),
        lambda: decode(msgpack.packb(obj, use_bin_type=True), limits, NOW),
    ):
        try:
            check()
            reasons.add(None)
        except Rejected as exc:
            reasons.add(exc.reason)
    assert len(reasons) == 1, reasons
    return reasons.pop()


@pytest.mark.parametrize("kind", ["delete", "exclude", "include", "reset_content"])
def test_a_command_older_than_the_retention_is_accepted(kind: str) -> None:
    old = NOW - 401 * DAY_MS
    record = validate(command(old, kind), L, NOW)
    assert isinstance(record, Command) and record.issued_at == old
    assert reason(command(old, kind)) is None
    assert reason(command(NOW - 10_000 * DAY_MS, kind)) is None  # any age
    assert reason(command(old, kind), Limits(retention_days=7)) is None


def test_an_event_older_than_the_retention_is_still_rejected() -> None:
    assert reason(event(NOW - 401 * DAY_MS)) == "timestamp_too_old"
    assert reason(event(NOW - 400 * DAY_MS - 1)) == "timestamp_too_old"
    assert reason(event(NOW - 400 * DAY_MS)) is None


def test_a_command_too_far_ahead_is_still_rejected() -> None:
    assert reason(command(NOW + 24 * HOUR_MS)) is None
    assert reason(command(NOW + 24 * HOUR_MS + 1)) == "timestamp_in_future"


def test_kafka_keeps_records_past_the_retention_and_the_future_window() -> None:
    # accepted at event time E >= now - 400 d with E <= produce time + 24 h: kept 400 d + 24 h
    # after it was produced, plus a day
    assert L.log_retention_ms() == 400 * DAY_MS + 24 * HOUR_MS + DAY_MS == 402 * DAY_MS
    assert Limits(retention_days=30, max_future_hours=2).log_retention_ms() == (
        31 * DAY_MS + 2 * HOUR_MS
    )


def test_required_retention_of_each_topic() -> None:
    cfg = Settings(topic_prefix="x.", retention_days=30, max_future_hours=2)
    need = required_retention(cfg)
    keep = cfg.limits.log_retention_ms()
    assert need == {
        "x.identify": keep,
        "x.track": keep,
        "x.page": keep,
        "x.feedback": keep,
        "x.content": keep,
        "x.commands": FOREVER,
        "x.dlq": keep,
    }
    # the others keep what they are created with
    assert set(pipeline_topics(cfg)) - set(need) == {
        "x.company-deltas",
        "x.segments",
        "x.dlq-redriven",
        "x.purge-staging",
    }


def test_keeps_less() -> None:
    need = 402 * DAY_MS
    assert keeps_less(7 * DAY_MS, FOREVER, need)
    assert keeps_less(need - 1, FOREVER, need)
    assert not keeps_less(need, FOREVER, need)
    assert not keeps_less(FOREVER, FOREVER, need)
    assert keeps_less(FOREVER, 10**12, need)  # size-based deletion, however long the time
    assert keeps_less(FOREVER, 0, need)
    assert keeps_less(10**15, FOREVER, FOREVER)  # commands: forever, nothing less
    assert not keeps_less(FOREVER, FOREVER, FOREVER)


def row(retention_ms: int, retention_bytes: int, required_ms: int | None) -> TopicRetention:
    return TopicRetention("p.track", 8, retention_ms, retention_bytes, "delete", required_ms)


def test_what_apply_retention_changes() -> None:
    need = 402 * DAY_MS
    assert _retention_change(row(need, FOREVER, need)) is None
    assert _retention_change(row(7 * DAY_MS, FOREVER, None)) is None  # no requirement
    change = _retention_change(row(7 * DAY_MS, FOREVER, need))
    assert change is not None and change.changed == {"retention.ms": (7 * DAY_MS, need)}
    assert change.line() == f"changed p.track: retention.ms {7 * DAY_MS} -> {need}"
    # a longer retention stays; only the size limit goes
    change = _retention_change(row(FOREVER, 5000, need))
    assert change is not None and change.changed == {"retention.bytes": (5000, FOREVER)}
    change = _retention_change(row(DAY_MS, 5000, FOREVER))
    assert change is not None
    assert change.changed == {"retention.ms": (DAY_MS, FOREVER), "retention.bytes": (5000, -1)}


def test_the_warning_says_what_is_kept_what_is_needed_and_the_fix() -> None:
    line = row(7 * DAY_MS, FOREVER, 402 * DAY_MS).warning()
    assert line.startswith("warning: topic p.track keeps records 7 days (retention.ms=604800000)")
    assert "402 days (retention.ms=34732800000)" in line
    assert line.endswith("run `profiles topics --apply-retention`")
    assert "\n" not in line
    line = row(FOREVER, 5000, FOREVER).warning()
    assert "retention.bytes=5000" in line and "forever" in line and "keeps records" not in line
    assert not row(7 * DAY_MS, FOREVER, None).keeps_less
    assert not TopicRetention("p.dlq", None, None, None, None, 402 * DAY_MS).keeps_less
