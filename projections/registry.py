"""The segment registry and what membership writes (pure, no I/O).

The registry is every definition of `profiles.segments`, as kept in the `{ns}::segments`
hash (keys.py); its version `_v` is its generation. Membership of one entity is the sorted
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
from projections.store import IndexOp, version_of
from schemas.segments import PropertyCondition, Segment, parse_segment


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
    fence_field: str,
    offset: int,
) -> tuple[dict[str, bytes], list[str], set[tuple[str, str]]] | None:
    """Pure: the registry writes for one `profiles.segments` record (None for a tombstone) —
    (to set, to delete, the (app, scope) pairs whose profiles must be evaluated again) — or
    None when the record was applied already (at or below the fence)."""
    if offset <= int(fields.get(fence_field, b"-1")):
        return None
    old = decode_field(fields[segment_id])["definition"] if segment_id in fields else None
    scopes = {(old["app_id"], old["scope"])} if old is not None else set()
    to_set = {fence_field: str(offset).encode()}
    to_delete = []
    if segment is None:
        if old is not None:
            to_delete.append(segment_id)
    else:
        scopes.add((segment.app_id, segment.scope))
        definition = segment.model_dump(mode="json", exclude_none=True)
        to_set[segment_id] = encode_field({"offset": offset, "definition": definition})
    return to_set, to_delete, scopes


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
    field_of: Mapping[str, Any],
    company_properties: Mapping[str, Any] | None,
) -> Profile:
    """A Profile from a user's decoded fields (field name -> value)."""
    days = {d: field_of[keys.DAY_PREFIX + d] for d in header["days"]}
    return Profile.from_fields(
        header, days, field_of.get(keys.ENGAGEMENT) or [], company_properties
    )


def company_profile(header: Mapping[str, Any], field_of: Mapping[str, Any]) -> Profile:
    days = {d: field_of[keys.DAY_PREFIX + d] for d in header["days"]}
    return Profile.from_fields(header, days, [], None)


DUE = "_du"
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


def membership_ops(
    namespace: str,
    app_id: str,
    scope: str,
    entity_id: str,
    old: Membership,
    new: Membership,
    every: list[str] | None = None,
    *,
    exact: bool = True,
) -> tuple[list[IndexOp], list[IndexOp]]:
    """Member and due set moves from `old` to `new`, as (ahead, moves): `ahead` goes out before
    the entity's write, the entries it gains (the segments it enters, its due entry), so that a
    writer killed after its write leaves none missing; `moves` after it (`membership.place`):
    the entity put (again) in the set of each segment of `new` and taken out of those only
    `old` has, whatever the sets hold. With `every` (segment ids), assert its place in each of
    those sets and its due entry too.

    A fold step passes exact=False: its due entry may only come earlier, never later or away,
    because a company step may just have made the entity due at once (its own step cannot
    see that company's change); the clock's evaluation, which reads the company, sets it
    exactly."""
    bucket = keys.index_bucket(entity_id)
    member = keys.id_member(entity_id)
    ahead, ops = [], []
    before, after = set(old.ids), set(new.ids)
    touched = before | after | set(every or ())
    for segment_id in sorted(touched):
        key = keys.segment_members(namespace, app_id, segment_id, bucket)
        inside = segment_id in after
        ops.append(IndexOp(key, None if inside else member, member if inside else None))
        if inside and segment_id not in before:
            ahead.append(ops[-1])
    if every is not None or old.due != new.due:
        key = keys.due(namespace, app_id, scope, bucket)
        if new.due is not None:
            ops.append(IndexOp(key, None, member, float(new.due), earlier_only=not exact))
            ahead.append(ops[-1])
        elif exact:
            ops.append(IndexOp(key, member, None))
    return ahead, ops
