"""The segment registry and what membership writes (pure, no I/O).

The registry is every definition of `profiles.segments`, as kept in the `{ns}::segments`
hash (keys.py): per segment id the offset of its latest record and its definition (None once
removed, so that an older record of it, read late, stays out); its version `_v` is its
generation. Membership of one entity is the sorted
ids of the segments of its app and scope that it matches now, plus when the clock may next
change that; `membership_ops` turns a change into moves in the member and due sets.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from projections import keys
from projections.fold import decode_field, encode_field
from projections.segments import Profile, conditions, evaluate, next_change
from projections.store import IndexOp, MemberMove, version_of
from schemas.segments import (
    ContentCondition,
    EventCondition,
    PageCondition,
    PropertyCondition,
    Segment,
    parse_segment,
)
from schemas.timefmt import day_of

DAY_MS = 86_400_000


@dataclass(frozen=True)
class Registry:
    generation: int = 0
    segments: dict[str, Segment] = field(default_factory=dict)
    offsets: dict[str, int] = field(default_factory=dict)

    def of(self, app_id: str, scope: str) -> list[Segment]:
        """The app's segments of one scope, by id."""
        return [
            s for _i, s in sorted(self.segments.items()) if (s.app_id, s.scope) == (app_id, scope)
        ]

    def scopes(self) -> set[tuple[str, str]]:
        """Every (app, scope) that has a segment."""
        return {(s.app_id, s.scope) for s in self.segments.values()}

    def reads_companies(self, app_id: str) -> bool:
        """Whether a user segment of the app reads its company's properties."""
        return any(
            isinstance(c, PropertyCondition) and c.source == "company_properties"
            for s in self.of(app_id, "user")
            for c in conditions(s.rule)
        )


_parsed: dict[tuple[tuple[str, bytes], ...], Registry] = {}


def registry_of(fields: Mapping[str, bytes]) -> Registry:
    """The registry stored in these hash fields (parsed once per distinct content)."""
    token = tuple(sorted(fields.items()))
    found = _parsed.get(token)
    if found is None:
        segments, offsets = {}, {}
        for name, raw in fields.items():
            if name.startswith("_"):
                continue
            entry = decode_field(raw)
            if entry["definition"] is not None:
                segments[name] = parse_segment(entry["definition"])
                offsets[name] = entry["offset"]
        found = Registry(version_of(dict(fields)), segments, offsets)
        if len(_parsed) > 64:
            _parsed.clear()
        _parsed[token] = found
    return found


def plan_definition(
    fields: Mapping[str, bytes],
    segment_id: str,
    segment: Segment | None,
    offset: int,
) -> tuple[dict[str, bytes], set[tuple[str, str]]] | None:
    """Pure: the registry writes for one `profiles.segments` record (None for a tombstone) —
    (fields to set, the (app, scope) pairs whose profiles must be evaluated again) — or None
    when this segment's entry holds this record or a later one already.

    The fence is per segment id, not per partition: a live worker and a replay's rebuild may
    store definitions in one namespace in any order, and each id keeps its latest."""
    entry = decode_field(fields[segment_id]) if segment_id in fields else None
    if entry is not None and offset <= entry["offset"]:
        return None
    old = entry["definition"] if entry is not None else None
    scopes = {(old["app_id"], old["scope"])} if old is not None else set()
    definition = None
    if segment is not None:
        scopes.add((segment.app_id, segment.scope))
        definition = segment.model_dump(mode="json", exclude_none=True)
    to_set = {segment_id: encode_field({"offset": offset, "definition": definition})}
    return to_set, scopes


@dataclass(frozen=True)
class Membership:
    ids: list[str]
    due: int | None


NONE = Membership([], None)


def membership(segments: list[Segment], profile: Profile, now_ms: int) -> Membership:
    ids = [s.id for s in segments if evaluate(s, profile, now_ms)]
    times = [t for s in segments if (t := next_change(s, profile, now_ms)) is not None]
    return Membership(ids, min(times, default=None))


def user_profile(
    header: Mapping[str, Any],
    figures: Mapping[str, Any],
    engagement: list[list[Any]],
    company_properties: Mapping[str, Any] | None,
) -> Profile:
    """A Profile from a user's header, the figures of its days (those the segments' windows
    cover at least, `segment_needs`), its engagement items and its company's properties."""
    return Profile.from_fields(header, figures, engagement, company_properties)


def company_profile(header: Mapping[str, Any], figures: Mapping[str, Any]) -> Profile:
    return Profile.from_fields(header, figures, [], None)


@dataclass(frozen=True)
class SegmentNeeds:
    """What evaluating an app's user segments reads of a profile besides its header: the
    figures of the days from `window_start` on (None: none), the engagement items."""

    window_start: str | None = None
    engagement: bool = False


def segment_needs(
    registry: Registry, app_id: str, now_ms: int, scope: str = "user"
) -> SegmentNeeds:
    widest = 0
    content = False
    for s in registry.of(app_id, scope):
        for c in conditions(s.rule):
            if isinstance(c, EventCondition | PageCondition):
                widest = max(widest, c.days)
            content = content or isinstance(c, ContentCondition)
    start = day_of(now_ms - (widest - 1) * DAY_MS) if widest else None
    return SegmentNeeds(start, content)


def window_days(needs: SegmentNeeds, now_ms: int) -> list[str]:
    """Every UTC day from the window's start to tomorrow (an event may be a day ahead)."""
    if needs.window_start is None:
        return []
    out, at = [], now_ms + DAY_MS
    while (day := day_of(at)) >= needs.window_start:
        out.append(day)
        at -= DAY_MS
    return sorted(out)


DUE = keys.DUE
MEMBERSHIP = (keys.SEGMENTS, DUE)  # the entity fields membership_fields writes


def stored_membership(fields: Mapping[str, bytes]) -> Membership:
    ids = decode_field(fields[keys.SEGMENTS]) if keys.SEGMENTS in fields else []
    due = int(fields[DUE]) if DUE in fields else None
    return Membership(ids, due)


def membership_fields(m: Membership) -> dict[str, bytes]:
    """The entity fields that hold a membership (absent ones mean none)."""
    out = {}
    if m.ids:
        out[keys.SEGMENTS] = encode_field(m.ids)
    if m.due is not None:
        out[DUE] = str(m.due).encode()
    return out


def membership_moves(
    namespace: str,
    app_id: str,
    scope: str,
    entity_id: str,
    version: int,
    old: Membership,
    new: Membership,
    every: list[str] | None = None,
    *,
    exact: bool = True,
) -> tuple[list[MemberMove], list[IndexOp]]:
    """What the entity's membership changing from `old` to `new` at entity `version` moves,
    sent after the write that made that version: the entity in the set of each segment only
    `new` has, out of those only `old` has — or, with `every` (segment ids), its place in
    each of those sets asserted as well (a repair) — and its due entry.

    The member sets take a move only if they placed no newer version of the entity, so
    whatever order moves of different writers arrive in, each set ends with the decision of
    the entity's latest placed version. A fold step passes exact=False: its due entry may
    only come earlier, never later or away, because a company step may just have made the
    entity due at once (its own step cannot see that company's change); the clock's
    evaluation, which reads the company, sets it exactly."""
    bucket = keys.index_bucket(entity_id)
    member = keys.id_member(entity_id)
    before, after = set(old.ids), set(new.ids)
    touched = (before ^ after) | set(every or ())
    moves = [
        MemberMove(
            keys.segment_members(namespace, app_id, segment_id, bucket),
            keys.segment_versions(namespace, app_id, segment_id, bucket),
            member,
            version,
            segment_id in after,
        )
        for segment_id in sorted(touched)
    ]
    due = []
    if every is not None or old.due != new.due:
        key = keys.due(namespace, app_id, scope, bucket)
        if new.due is not None:
            due.append(IndexOp(key, None, member, float(new.due), earlier_only=not exact))
        elif exact:
            due.append(IndexOp(key, member, None))
    return moves, due
