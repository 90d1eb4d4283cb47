"""Segment membership: whether a stored profile matches a segment at an instant (pure, no I/O).

Semantics (issue 6), for a `Profile` read from the stored projection fields and `now_ms`:

- A group is `and` (every item) or `or` (any item) of its conditions and subgroups.
- `property`: the value under `key` in `properties`, `auto_properties` or, for a user,
  the current company's `properties` (none when the user has no company).
  A missing key (or a null value) makes every operator false except `neq` (true) and
  `exists` (false).
  `eq` is typed equality: strings, booleans and numbers (int and float alike) are three
  kinds that never equal each other (`"5"` ≠ `5`, `true` ≠ `1`); `neq` is its negation.
  `in`: equal (so typed) to an item of the list. `contains`/`starts_with`: case-sensitive,
  both sides strings. `gt`/`gte`/`lt`/`lte`: number against number, or string against
  string (code point order). Any other type pairing is false, never an exception.
- `time`: `within_days N` = the timestamp is present and ≥ now − N days (future ones
  included); `before_days N` = present and < now − N days. Days are 86 400 000 ms.
- `number`: `total_sessions` or `nps_latest` against the value; `nps_latest` missing
  (no nps response) follows the missing-property rule (`neq` true, the rest false).
- `event`: the track name's count summed over the UTC days from
  day_of(now − (days − 1) days) through day_of(now), inclusive, compared with
  `at_least` (≥) and `at_most` (≤), both when both are given; a never-seen name counts 0.
- `page`: some UTC day of that same window has a count > 0 for the page key.
- `content`: the engagement status of `content_id`; content never engaged is `not_started`.
- `excluded`: the header's `excluded` flag equals `value`.
- Company scope: `property` reads the company's `properties`; `time`, `total_sessions`,
  `event` and `page` read the company header and its per-day figures (its counted members'
  sum). Conditions that only mean something for a user (schemas.segments.user_only) are
  refused in a company segment when it is parsed; evaluation treats them as false.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from schemas.limits import DAY_MS
from schemas.segments import (
    Condition,
    ContentCondition,
    EventCondition,
    Group,
    NumberCondition,
    PageCondition,
    PropertyCondition,
    Segment,
    TimeCondition,
)
from schemas.timefmt import day_of

_ORDER: dict[str, Callable[[Any, Any], bool]] = {
    "gt": operator.gt,
    "gte": operator.ge,
    "lt": operator.lt,
    "lte": operator.le,
}


@dataclass(frozen=True)
class Profile:
    """What segment rules read of one user or company projection."""

    properties: Mapping[str, Any]
    auto_properties: Mapping[str, Any]
    company_properties: Mapping[str, Any] | None
    first_seen_at: int | None
    last_seen_at: int | None
    signed_up_at: int | None
    total_sessions: int
    nps_latest: int | None
    excluded: bool
    events: Mapping[str, Mapping[str, int]]  # day -> track name -> count
    pages: Mapping[str, Mapping[str, int]]  # day -> page key -> count
    content: Mapping[str, str]  # content_id -> status

    @classmethod
    def from_fields(
        cls,
        header: Mapping[str, Any],
        days: Mapping[str, Mapping[str, Any]],
        engagement: list[list[Any]],
        company_properties: Mapping[str, Any] | None,
    ) -> Profile:
        """From the decoded `h` field (user or company), the `d:` figures by day, the `en`
        items, and the properties of the user's current company (None for none)."""
        return cls(
            properties=header.get("properties") or {},
            auto_properties=header.get("auto_properties") or {},
            company_properties=company_properties,
            first_seen_at=header.get("first_seen_at"),
            last_seen_at=header.get("last_seen_at"),
            signed_up_at=header.get("signed_up_at"),
            total_sessions=header.get("total_sessions") or 0,
            nps_latest=header.get("nps_latest"),
            excluded=bool(header.get("excluded")),
            events={d: f.get("n") or {} for d, f in days.items()},
            pages={d: f.get("p") or {} for d, f in days.items()},
            content={item[0]: item[7] for item in engagement},
        )


def evaluate(segment: Segment, profile: Profile, now_ms: int) -> bool:
    """Whether the profile is a member of the segment at `now_ms`."""
    return _group(segment.rule, profile, now_ms, segment.scope == "company")


def conditions(group: Group) -> Iterator[Condition]:
    """Every condition of a rule tree, depth first."""
    for item in group.conditions:
        if isinstance(item, Group):
            yield from conditions(item)
        else:
            yield item


def time_dependent(segment: Segment) -> bool:
    """Whether membership can change with the clock alone (time, event or page conditions)."""
    return any(
        isinstance(c, TimeCondition | EventCondition | PageCondition)
        for c in conditions(segment.rule)
    )


def next_change(segment: Segment, profile: Profile, now_ms: int) -> int | None:
    """The earliest instant after `now_ms` at which the clock alone may change membership,
    or None when it never can (until the profile changes).

    Conservative, never late: a `time` condition flips one ms after its timestamp + N days;
    an `event`/`page` window moves at every UTC midnight, which matters while the profile
    has figures on a day the window covers now or will cover later.
    """
    times: list[int] = []
    midnight = now_ms - now_ms % DAY_MS + DAY_MS
    for c in conditions(segment.rule):
        if isinstance(c, TimeCondition):
            at = getattr(profile, c.field)
            if at is None:
                continue
            flip = (
                at + (c.within_days if c.within_days is not None else c.before_days or 0) * DAY_MS
            )
            if flip >= now_ms:
                times.append(flip + 1)
        elif isinstance(c, EventCondition | PageCondition):
            first, _last = _window(now_ms, c.days)
            figures = profile.events if isinstance(c, EventCondition) else profile.pages
            if any(d >= first and f for d, f in figures.items()):
                times.append(midnight)
    return min(times, default=None)


def _group(group: Group, profile: Profile, now_ms: int, company: bool) -> bool:
    results = (
        _group(item, profile, now_ms, company)
        if isinstance(item, Group)
        else _condition(item, profile, now_ms, company)
        for item in group.conditions
    )
    return all(results) if group.op == "and" else any(results)


def _condition(c: Condition, profile: Profile, now_ms: int, company: bool) -> bool:
    if isinstance(c, PropertyCondition):
        if c.source == "properties":
            source: Mapping[str, Any] | None = profile.properties
        elif company:
            return False
        elif c.source == "auto_properties":
            source = profile.auto_properties
        else:
            source = profile.company_properties
        actual = None if source is None else source.get(c.key)
        return _compare(c.operator, actual, actual is not None, c.value)
    if isinstance(c, TimeCondition):
        at = getattr(profile, c.field)
        if at is None:
            return False
        if c.within_days is not None:
            return bool(at >= now_ms - c.within_days * DAY_MS)
        return bool(at < now_ms - (c.before_days or 0) * DAY_MS)
    if isinstance(c, NumberCondition):
        if c.field == "nps_latest":
            if company:
                return False
            value = profile.nps_latest
        else:
            value = profile.total_sessions
        return _compare(c.operator, value, value is not None, c.value)
    if isinstance(c, EventCondition):
        first, last = _window(now_ms, c.days)
        count = sum(n.get(c.name, 0) for d, n in profile.events.items() if first <= d <= last)
        return (c.at_least is None or count >= c.at_least) and (
            c.at_most is None or count <= c.at_most
        )
    if isinstance(c, PageCondition):
        first, last = _window(now_ms, c.days)
        return any(p.get(c.page, 0) > 0 for d, p in profile.pages.items() if first <= d <= last)
    if company:
        return False
    if isinstance(c, ContentCondition):
        return profile.content.get(c.content_id, "not_started") == c.status
    return profile.excluded == c.value


def _window(now_ms: int, days: int) -> tuple[str, str]:
    """The first and last UTC day of the last `days` days, today included."""
    return day_of(now_ms - (days - 1) * DAY_MS), day_of(now_ms)


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    return "str" if isinstance(value, str) else "other"


def _equal(a: Any, b: Any) -> bool:
    return _kind(a) == _kind(b) != "other" and bool(a == b)


def _compare(op: str, actual: Any, present: bool, expected: Any) -> bool:
    if op == "exists":
        return present
    if not present:
        return op == "neq"
    if op == "eq":
        return _equal(actual, expected)
    if op == "neq":
        return not _equal(actual, expected)
    if op == "in":
        return any(_equal(actual, item) for item in expected)
    if op in ("contains", "starts_with"):
        if not (isinstance(actual, str) and isinstance(expected, str)):
            return False
        return expected in actual if op == "contains" else actual.startswith(expected)
    kind = _kind(actual)
    if kind not in ("number", "str") or kind != _kind(expected):
        return False
    return _ORDER[op](actual, expected)
