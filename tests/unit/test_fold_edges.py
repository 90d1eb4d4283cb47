"""Edge cases of sessions and last-writer-wins, pinned on the real fold with exact values."""

from __future__ import annotations

from typing import Any

from foldkit import fold

NOW = 1_795_000_000_000
T0 = NOW - 86_400_000
MIN = 60_000


def track(eid: str, ts: int, name: str = "Clicked") -> dict[str, Any]:
    return {
        "type": "track",
        "app_id": "a",
        "user_id": "u",
        "event_id": eid,
        "timestamp": ts,
        "name": name,
    }


def durations(records: list[dict[str, Any]]) -> list[float]:
    return [s["duration_seconds"] for s in fold(records, now_ms=NOW).sessions("a", "u")]


def test_a_gap_of_exactly_the_limit_stays_one_session() -> None:
    assert durations([track("1", T0), track("2", T0 + 30 * MIN)]) == [1800.0]


def test_a_gap_one_millisecond_over_the_limit_splits() -> None:
    assert durations([track("1", T0), track("2", T0 + 30 * MIN + 1)]) == [0.0, 0.0]


def test_a_late_event_joins_two_sessions_into_one() -> None:
    early, late = track("1", T0), track("2", T0 + 50 * MIN)
    reader = fold([early, late, track("3", T0 + 25 * MIN)], now_ms=NOW, batches=[[0, 1], [2]])
    sessions = reader.sessions("a", "u")
    assert [(s["events"], s["duration_seconds"]) for s in sessions] == [(3, 3000.0)]
    assert reader.user("a", "u")["total_sessions"] == 1
    assert reader.user("a", "u")["overview"]["avg_session_seconds"] == 3000.0


def test_a_single_event_session_lasts_zero_seconds() -> None:
    reader = fold([track("1", T0)], now_ms=NOW)
    assert reader.sessions("a", "u")[0]["duration_seconds"] == 0.0
    assert reader.user("a", "u")["overview"]["avg_session_seconds"] == 0.0


def identify(eid: str, ts: int, name: str) -> dict[str, Any]:
    return {
        "type": "identify",
        "app_id": "a",
        "user_id": "u",
        "event_id": eid,
        "timestamp": ts,
        "traits": {"name": name},
    }


def test_last_writer_wins_ties_on_time_are_broken_by_event_id() -> None:
    b, a = identify("b", T0, "from b"), identify("a", T0, "from a")
    for arrival in ([a, b], [b, a]):
        for batches in ([[0, 1]], [[0], [1]]):
            assert fold(arrival, now_ms=NOW, batches=batches).user("a", "u")["name"] == "from b"


def test_event_time_not_arrival_decides_last_writer() -> None:
    records = [identify("a", T0 + 1000, "newer"), identify("z", T0, "older")]
    assert fold(records, now_ms=NOW, batches=[[0], [1]]).user("a", "u")["name"] == "newer"


def test_redelivered_and_retried_records_count_once() -> None:
    records = [track("1", T0), track("2", T0 + MIN), track("1", T0)]  # a producer retry
    reader = fold(records, now_ms=NOW, batches=[[0, 1], [0, 1, 2], [2]])
    assert reader.user("a", "u")["overview"]["total_events"] == 2
