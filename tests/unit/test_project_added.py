"""The incremental projection must equal the full one: project_added(old, new) == project(new)."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from projections.fold import (
    Unreadable,
    UserState,
    apply,
    compact,
    decode_field,
    encode_fields,
    project,
    project_added,
)
from schemas.codec import validate
from schemas.limits import Limits

DAY = 86_400_000
MIN = 60_000
T0 = 1_794_960_000_000  # a UTC midnight
NOW = T0 + 3 * DAY
GAP = 30 * MIN

# Instants bunched around two midnights, so sessions cross days and late rows join them.
instants = st.one_of(
    st.integers(T0 + DAY - 90 * MIN, T0 + DAY + 90 * MIN),
    st.integers(T0 + 2 * DAY - 90 * MIN, T0 + 2 * DAY + 90 * MIN),
    st.integers(T0, T0 + 3 * DAY - 1),
)
contexts = st.one_of(
    st.none(),
    st.fixed_dictionaries(
        {},
        optional={
            "page_url": st.sampled_from(["https://a.io/x", "b.io/y"]),
            "country": st.sampled_from(["DE", "FR"]),
        },
    ),
)


@st.composite
def wire(draw: st.DrawFn, eid: str) -> dict[str, Any]:
    kind = draw(st.sampled_from(["track", "track", "page", "feedback", "content", "identify"]))
    rec: dict[str, Any] = {
        "type": kind,
        "app_id": "a",
        "user_id": "u",
        "event_id": eid,
        "timestamp": draw(instants),
    }
    ctx = draw(contexts)
    if ctx and kind != "identify":
        rec["context"] = ctx
    if kind == "track":
        rec["name"] = draw(st.sampled_from(["Open", "Save"]))
    elif kind == "page":
        rec["url"] = draw(st.sampled_from(["https://a.io/p", "https://a.io/q"]))
    elif kind == "feedback":
        rec |= {"survey_id": "s", "survey_type": "nps", "score": draw(st.integers(0, 10))}
    elif kind == "content":
        rec |= {
            "content_id": draw(st.sampled_from(["c1", "c2"])),
            "content_type": "flow",
            "action": draw(st.sampled_from(["seen", "started", "step_completed", "completed"])),
            "step": draw(st.integers(1, 3)),
        }
    else:
        rec["traits"] = {"name": draw(st.sampled_from(["Ann", "Bo"]))}
        if draw(st.booleans()):
            rec["company"] = {"id": draw(st.sampled_from(["c", "d"])), "name": "C"}
    return rec


@st.composite
def histories(draw: st.DrawFn) -> tuple[list[Any], list[Any]]:
    n_old, n_new = draw(st.integers(0, 25)), draw(st.integers(1, 8))
    records = [draw(wire(f"e{i}")) for i in range(n_old + n_new)]
    if draw(st.booleans()):  # a reset both before and after: it shapes engagement, unchanged
        records.insert(0, {"type": "command", "command": "reset_content", "command_id": "r",
                           "issued_at": T0 + DAY, "app_id": "a", "user_id": "u"})  # fmt: skip
        n_old += 1
    parsed = [validate(r, Limits(), NOW) for r in records]
    return parsed[:n_old], parsed[n_old:]


def full(state: UserState) -> dict[str, Any]:
    return {k: decode_field(v) for k, v in encode_fields(project(state, GAP)).items()}


@settings(max_examples=400, deadline=None)
@given(histories())
def test_adding_records_projects_as_the_full_projection(
    history: tuple[list[Any], list[Any]],
) -> None:
    old_records, new_records = history
    old = apply(UserState(), old_records, now_ms=NOW, retention_days=400)
    new = apply(old, new_records, now_ms=NOW, retention_days=400)
    stored = encode_fields(project(old, GAP))
    result = project_added(old, new, stored, GAP)
    if result is None:  # only when nothing old existed (no header yet)
        assert not stored
        return
    projected, encoded = result
    expected = full(new)
    assert {k: decode_field(v) for k, v in encoded.items()} == expected
    assert projected == {k: v for k, v in expected.items() if k[:2] in ("h", "d:", "en")}


def test_a_replaced_or_erased_row_takes_the_full_path() -> None:
    rec = {"type": "track", "app_id": "a", "user_id": "u", "event_id": "x", "timestamp": T0,
           "name": "Open"}  # fmt: skip
    old = apply(UserState(), [validate(rec, Limits(), NOW)], now_ms=NOW, retention_days=400)
    stored = encode_fields(project(old, GAP))
    _bucket, _id, row = compact(validate(rec, Limits(), NOW))
    replaced = UserState({"x": [*row[:2], "Another", *row[3:]]}, {}, {})
    assert project_added(old, replaced, stored, GAP) is None
    assert project_added(old, UserState(), stored, GAP) is None


def test_a_day_left_without_figures_goes_when_a_late_row_moves_its_session() -> None:
    # Day 2 shows only because a session (of a feedback answer) starts on it; a late track at
    # 23:50 of day 1 pulls that session's start into day 1, so day 2 has nothing left.
    answer = {
        "type": "feedback",
        "app_id": "a",
        "user_id": "u",
        "event_id": "f",
        "timestamp": T0 + 2 * DAY + 5 * MIN,
        "survey_id": "s",
        "survey_type": "survey",
    }
    late = {"type": "track", "app_id": "a", "user_id": "u", "event_id": "t",
            "timestamp": T0 + 2 * DAY - 10 * MIN, "name": "Open"}  # fmt: skip
    old = apply(UserState(), [validate(answer, Limits(), NOW)], now_ms=NOW, retention_days=400)
    new = apply(old, [validate(late, Limits(), NOW)], now_ms=NOW, retention_days=400)
    stored = encode_fields(project(old, GAP))
    assert "d:2026-11-20" in stored
    result = project_added(old, new, stored, GAP)
    assert result is not None
    assert {k: decode_field(v) for k, v in result[1].items()} == full(new)
    assert result[0]["h"]["days"] == ["2026-11-19"]


def test_a_state_of_another_format_is_refused_not_guessed() -> None:
    """A state in the form of an older version (whole contexts in three parts), or damaged
    bytes, is not read as something it is not: the worker stops on it (streams/guard.py)."""
    recs = [
        {"type": "track", "app_id": "a", "user_id": "u", "event_id": "1", "timestamp": T0,
         "name": "Open", "context": {"country": "DE"}},
    ]  # fmt: skip
    current = apply(UserState(), [validate(r, Limits(), NOW) for r in recs], now_ms=NOW,
                    retention_days=400)  # fmt: skip
    assert UserState.from_bytes(current.to_bytes()) == current
    old_form = msgpack.packb([current.interactions, current.identifies, current.commands])
    for raw in (old_form, b"\xc1garbage", msgpack.packb({"a": 1}), current.to_bytes()[:-3]):
        with pytest.raises(Unreadable):
            UserState.from_bytes(raw)
