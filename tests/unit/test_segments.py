"""Segments (issue 6): definitions parse or fail in one line; membership matches a reference."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from reference import fit_scope
from reference import segment_member as reference

from projections.segments import Profile, evaluate, time_dependent
from schemas.segments import Segment, parse_segment


def _day(ms: int) -> str:
    return datetime.fromtimestamp(ms // 1000, UTC).date().isoformat()


NOW = 1_795_000_000_000  # 2026-11-18T08:26:40Z, the middle of every generated clock
DAY = 86_400_000
KEYS = ["plan", "seats", "beta", "label", "gone"]
SCALARS: list[Any] = ["pro", "Pro", "pro-trial", "", "p", 0, 1, 2, 1.0, 2.5, -1, True, False]
NAMES = ["open", "save", "export"]
PAGES = ["app.example.com/", "app.example.com/Settings"]
CONTENT = ["f1", "f2", "f3"]
STATUSES = ["not_started", "seen", "in_progress", "completed", "dismissed"]
OPERATORS = ["eq", "neq", "contains", "starts_with", "gt", "gte", "lt", "lte", "exists", "in"]


# ---- generated profiles and definitions ----------------------------------------------------

scalars = st.sampled_from(SCALARS)
stamps = st.none() | st.integers(NOW - 60 * DAY, NOW + 2 * DAY)
counts = st.dictionaries(st.sampled_from(NAMES), st.integers(1, 4), max_size=3)
page_counts = st.dictionaries(st.sampled_from(PAGES), st.integers(1, 3), max_size=2)


@st.composite
def raw_profiles(draw: st.DrawFn, scope: str) -> dict[str, Any]:
    header: dict[str, Any] = {
        "properties": draw(st.dictionaries(st.sampled_from(KEYS), st.none() | scalars)),
        "first_seen_at": draw(stamps),
        "last_seen_at": draw(stamps),
        "signed_up_at": draw(stamps),
        "total_sessions": draw(st.integers(0, 8)),
    }
    if scope == "user":
        header["auto_properties"] = draw(st.dictionaries(st.sampled_from(KEYS), scalars))
        header["nps_latest"] = draw(st.none() | st.integers(0, 10))
        header["excluded"] = draw(st.booleans())
    else:
        header["users_count"] = draw(st.integers(0, 5))
    days = {}
    for back in draw(st.sets(st.integers(-3, 42), max_size=12)):
        n, p = draw(counts), draw(page_counts)
        days[_day(NOW - back * DAY)] = {"e": sum(n.values()), "s": 1, "ms": 0, "n": n, "p": p}
    engagement: list[list[Any]] = [
        [cid, "flow", None, "seen", NOW, None, 1, draw(st.sampled_from(STATUSES)), []]
        for cid in draw(st.sets(st.sampled_from(CONTENT)))
    ]
    company = draw(st.none() | st.dictionaries(st.sampled_from(KEYS), scalars))
    return {"header": header, "days": days, "engagement": engagement, "company_properties": company}


@st.composite
def property_conditions(draw: st.DrawFn) -> dict[str, Any]:
    op = draw(st.sampled_from(OPERATORS))
    c: dict[str, Any] = {
        "kind": "property",
        "source": draw(st.sampled_from(["properties", "auto_properties", "company_properties"])),
        "key": draw(st.sampled_from(KEYS)),
        "operator": op,
    }
    if op == "in":
        c["value"] = draw(st.lists(scalars, min_size=1, max_size=3))
    elif op in ("contains", "starts_with"):
        c["value"] = draw(st.sampled_from([s for s in SCALARS if isinstance(s, str)]))
    elif op != "exists":
        c["value"] = draw(scalars)
    return c


@st.composite
def time_conditions(draw: st.DrawFn) -> dict[str, Any]:
    bound = draw(st.sampled_from(["within_days", "before_days"]))
    field = draw(st.sampled_from(["last_seen_at", "signed_up_at", "first_seen_at"]))
    return {"kind": "time", "field": field, bound: draw(st.integers(0, 50))}


@st.composite
def event_conditions(draw: st.DrawFn) -> dict[str, Any]:
    low, high = draw(st.none() | st.integers(0, 6)), draw(st.none() | st.integers(0, 12))
    if low is None and high is None:
        low = 1
    if low is not None and high is not None and low > high:
        low, high = high, low
    c: dict[str, Any] = {"kind": "event", "name": draw(st.sampled_from(NAMES))}
    c["days"] = draw(st.integers(1, 45))
    if low is not None:
        c["at_least"] = low
    if high is not None:
        c["at_most"] = high
    return c


leaf_conditions = st.one_of(
    property_conditions(),
    time_conditions(),
    st.fixed_dictionaries(
        {
            "kind": st.just("number"),
            "field": st.sampled_from(["total_sessions", "nps_latest"]),
            "operator": st.sampled_from(["gt", "gte", "lt", "lte", "eq", "neq"]),
            "value": st.integers(-1, 10) | st.sampled_from([2.5, 7.0]),
        }
    ),
    event_conditions(),
    st.fixed_dictionaries(
        {"kind": st.just("page"), "page": st.sampled_from(PAGES), "days": st.integers(1, 45)}
    ),
    st.fixed_dictionaries(
        {
            "kind": st.just("content"),
            "content_id": st.sampled_from(CONTENT),
            "status": st.sampled_from(STATUSES),
        }
    ),
    st.fixed_dictionaries({"kind": st.just("excluded"), "value": st.booleans()}),
)


def groups(depth: int) -> st.SearchStrategy[dict[str, Any]]:
    items = leaf_conditions if depth == 1 else leaf_conditions | groups(depth - 1)
    return st.fixed_dictionaries(
        {
            "op": st.sampled_from(["and", "or"]),
            "conditions": st.lists(items, min_size=1, max_size=4),
        }
    )


@st.composite
def cases(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any], int]:
    scope = draw(st.sampled_from(["user", "company"]))
    definition = {
        "id": "seg-1",
        "app_id": "a",
        "name": "Generated",
        "scope": scope,
        "rule": draw(groups(3)),
    }
    now = draw(st.integers(NOW - 3 * DAY, NOW + 3 * DAY) | st.sampled_from([NOW, NOW - NOW % DAY]))
    definition = fit_scope(definition)
    return definition, draw(raw_profiles(definition["scope"])), now


def _profile(raw: dict[str, Any]) -> Profile:
    return Profile.from_fields(
        raw["header"], raw["days"], raw["engagement"], raw["company_properties"]
    )


@settings(max_examples=600, deadline=None)
@given(cases())
def test_evaluate_matches_the_reference(case: tuple[dict[str, Any], dict[str, Any], int]) -> None:
    definition, raw, now = case
    segment = parse_segment(definition)
    expected = reference(segment.model_dump(), raw, now)
    assert evaluate(segment, _profile(raw), now) is expected


@settings(max_examples=300, deadline=None)
@given(cases(), st.integers(1, 10 * DAY))
def test_membership_without_time_rules_ignores_the_clock(
    case: tuple[dict[str, Any], dict[str, Any], int], later: int
) -> None:
    definition, raw, now = case
    segment = parse_segment(definition)
    if not time_dependent(segment):
        profile = _profile(raw)
        assert evaluate(segment, profile, now) == evaluate(segment, profile, now + later)


@settings(max_examples=200, deadline=None)
@given(cases())
def test_definitions_round_trip_through_json(
    case: tuple[dict[str, Any], dict[str, Any], int],
) -> None:
    segment = parse_segment(case[0])
    again = parse_segment(json.loads(segment.model_dump_json()))
    assert again == segment
    assert again.model_dump() == segment.model_dump()


# ---- edges, by example ----------------------------------------------------------------------


def _one(condition: dict[str, Any], scope: str = "user") -> Segment:
    rule = {"op": "and", "conditions": [condition]}
    return parse_segment({"id": "s", "app_id": "a", "name": "S", "scope": scope, "rule": rule})


def _user(**header: Any) -> Profile:
    return Profile.from_fields(header, {}, [], None)


def test_time_boundaries_are_inclusive_within_and_exclusive_before() -> None:
    edge = _user(last_seen_at=NOW - 7 * DAY)
    within = _one({"kind": "time", "field": "last_seen_at", "within_days": 7})
    before = _one({"kind": "time", "field": "last_seen_at", "before_days": 7})
    assert evaluate(within, edge, NOW) and not evaluate(before, edge, NOW)
    assert not evaluate(within, edge, NOW + 1) and evaluate(before, edge, NOW + 1)
    assert not evaluate(within, _user(), NOW) and not evaluate(before, _user(), NOW)


def test_event_window_is_whole_utc_days_including_today() -> None:
    midnight = NOW - NOW % DAY
    days = {_day(midnight - DAY): {"n": {"open": 2}, "p": {}}, _day(midnight): {"n": {"open": 1}}}
    profile = Profile.from_fields({}, days, [], None)
    today = _one({"kind": "event", "name": "open", "at_least": 2, "days": 1})
    two = _one({"kind": "event", "name": "open", "at_least": 3, "at_most": 3, "days": 2})
    assert not evaluate(today, profile, midnight) and evaluate(two, profile, midnight)
    assert not evaluate(two, profile, midnight + DAY)  # yesterday's 2 left the window


def test_missing_and_mismatched_properties() -> None:
    profile = _user(properties={"seats": 5, "plan": "pro", "beta": True})

    def holds(key: str, op: str, value: Any = None) -> bool:
        c = {"kind": "property", "source": "properties", "key": key, "operator": op}
        if op != "exists":
            c["value"] = value
        return evaluate(_one(c), profile, NOW)

    assert holds("gone", "neq", 1) and not holds("gone", "exists") and not holds("gone", "eq", 1)
    assert not holds("seats", "eq", "5") and holds("seats", "neq", "5")
    assert not holds("beta", "eq", 1) and holds("beta", "eq", True)
    assert not holds("seats", "gt", "1") and holds("seats", "gt", 4.5)
    assert not holds("seats", "contains", "5") and holds("plan", "starts_with", "pr")
    assert not holds("plan", "contains", "PRO") and holds("plan", "in", ["basic", "pro"])


def test_company_scope_refuses_user_only_conditions() -> None:
    company = Profile.from_fields(
        {"properties": {"plan": "pro"}, "total_sessions": 3}, {}, [], None
    )
    user_only: list[dict[str, Any]] = [
        {"kind": "excluded", "value": False},
        {"kind": "content", "content_id": "f1", "status": "not_started"},
        {"kind": "number", "field": "nps_latest", "operator": "neq", "value": 3},
        {
            "kind": "property",
            "source": "auto_properties",
            "key": "x",
            "operator": "neq",
            "value": 1,
        },
    ]
    for c in user_only:
        with pytest.raises(ValueError, match="company segment cannot use the user-only"):
            _one(c, "company")
        assert _one(c, "user")
    plan = {"kind": "property", "source": "properties", "key": "plan", "operator": "eq"}
    assert evaluate(_one({**plan, "value": "pro"}, "company"), company, NOW)


GOOD = {"id": "s", "app_id": "a", "name": "S", "scope": "user"}
TIME = {"kind": "time", "field": "last_seen_at", "within_days": 3}


def _nested(depth: int) -> dict[str, Any]:
    rule: dict[str, Any] = {"op": "and", "conditions": [TIME]}
    for _ in range(depth - 1):
        rule = {"op": "or", "conditions": [rule]}
    return rule


@pytest.mark.parametrize(
    ("definition", "fragment"),
    [
        ({**GOOD, "rule": {"op": "and", "conditions": [{"kind": "nope"}]}}, "known kind"),
        (
            {**GOOD, "rule": {"op": "and", "conditions": [{**TIME, "before_days": 2}]}},
            "exactly one",
        ),
        ({**GOOD, "rule": {"op": "and", "conditions": [{**TIME, "within_days": None}]}}, "one"),
        ({**GOOD, "rule": {"op": "and", "conditions": []}}, "at least 1"),
        ({**GOOD, "rule": _nested(6)}, "nested more than 5"),
        ({**GOOD, "id": "no spaces", "rule": _nested(1)}, "id"),
        ({**GOOD, "id": "x" * 65, "rule": _nested(1)}, "id"),
        ({**GOOD, "scope": "team", "rule": _nested(1)}, "scope"),
        ({**GOOD, "rule": _nested(1), "extra": 1}, "extra"),
        (
            {
                **GOOD,
                "rule": {
                    "op": "and",
                    "conditions": [
                        {"kind": "property", "source": "properties", "key": "k", "operator": "in"}
                    ],
                },
            },
            "list",
        ),
        (
            {
                **GOOD,
                "rule": {
                    "op": "and",
                    "conditions": [{"kind": "event", "name": "e", "days": 3}],
                },
            },
            "at_least",
        ),
        (
            {
                **GOOD,
                "rule": {
                    "op": "and",
                    "conditions": [
                        {"kind": "event", "name": "e", "at_least": 4, "at_most": 2, "days": 3}
                    ],
                },
            },
            "greater",
        ),
    ],
)
def test_invalid_definitions_fail_in_one_line(definition: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_segment(definition)
    message = str(caught.value)
    assert "\n" not in message and fragment in message


def test_depth_five_is_accepted_and_json_schema_exists() -> None:
    assert parse_segment({**GOOD, "rule": _nested(5)}).rule.depth() == 5
    schema = Segment.model_json_schema()
    assert "Group" in schema["$defs"] and json.dumps(schema)


def test_parsed_from_json_text() -> None:
    text = """{"id": "power-users", "app_id": "a", "name": "Power users", "scope": "user",
      "rule": {"op": "and",
      "conditions": [{"kind": "event", "name": "export", "at_least": 3, "days": 7},
                     {"op": "or", "conditions": [
                        {"kind": "content", "content_id": "onboarding", "status": "completed"},
                        {"kind": "property", "source": "company_properties", "key": "plan",
                         "operator": "in", "value": ["pro", "enterprise"]}]}]}}"""
    segment = parse_segment(json.loads(text))
    assert time_dependent(segment)
    assert parse_segment(json.loads(segment.model_dump_json(exclude_none=True))) == segment
