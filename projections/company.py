"""The pure company fold: members' contributions -> the company projection (docs/design.md §3).

A company is the sum over its current, non-excluded members of their per-day figures, and a
header that names it from the identifies of any user (company.py keeps what each member last
gave, by the user step's version, so any order and any number of deliveries give the same
company). A step costs what it touches, not the company's size:

- `m:<user>` holds a member's facts and users-tab row with their version, the days it counts
  and the version below which it has none other (`floor`); `md:<user>:<day>` its figures of
  one day with their version. A contribution names only the days that changed (or, `full`,
  every day it counts — the others go), and each day moves the sum `d:<day>` by the
  difference between what the member had there and has now.
- The header moves by differences too (`_ag` keeps what it is made of, also while no
  identify names the company and it has no header): users and sessions counted, the first
  and last seen while the member holding them stays, the name and properties while their
  last writer stays (`_fw`). Only when a member that held an extreme or a last writer takes
  it back does the step read every member's row (`Recompute`): a user deleted, excluded or
  moved away.
- The users tab is a sorted set beside the hash (keys.company_users: last seen first, then
  user id), so a member's change moves one entry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from projections import keys
from projections.fold import decode_field, encode_field


@dataclass(frozen=True)
class Contribution:
    """What one user step gives one company (one item of a profiles.company-deltas message),
    and where it was read from."""

    app_id: str
    company_id: str
    user_id: str
    version: int
    facts: dict[str, Any] | None
    member: dict[str, Any] | None
    days: dict[str, dict[str, Any] | None]  # day -> figures (None: gone)
    namespace: str  # the projection namespace of the user step that made it
    topic: str = ""  # "" when handed over in-process (replay), not read from a topic
    partition: int = 0
    offset: int = -1
    full: bool = False  # `days` is every day the member counts: the others go


def member_field(user_id: str) -> str:
    return keys.MEMBER_PREFIX + keys.escape(user_id)


def day_field(user_id: str, day: str) -> str:
    return f"{keys.MEMBER_DAYS_PREFIX}{keys.escape(user_id)}:{day}"


HEAD = [keys.HEADER, keys.FACT_WINNERS, keys.COMPANY_COUNTS, keys.SEGMENTS, keys.DUE, keys.VERSION]


def first_reads(items: list[Contribution]) -> list[str]:
    """What a step reads first of the company: header, last writers, the members' rows (and
    the fences of the contributions' partitions)."""
    fences = {keys.fence_field(c.topic, c.partition) for c in items if c.topic}
    return [*HEAD, *sorted({member_field(c.user_id) for c in items}), *sorted(fences)]


def fresh(stored: dict[str, bytes], items: list[Contribution]) -> list[Contribution]:
    """The contributions above the stored fence of their partition (the others were applied)."""
    fences = {k: int(v) for k, v in stored.items() if k.startswith(keys.FENCE_PREFIX)}
    return [
        c
        for c in items
        if not c.topic or c.offset > fences.get(keys.fence_field(c.topic, c.partition), -1)
    ]


def _member(stored: dict[str, bytes], user_id: str) -> list[Any] | None:
    raw = stored.get(member_field(user_id))
    return None if raw is None else decode_field(raw)


def second_reads(stored: dict[str, bytes], items: list[Contribution]) -> list[str]:
    """What a step reads next: each named member's figures of the days its contributions
    name (every day it counts, for a `full` one), and the sums of those days."""
    names: set[str] = set()
    days: set[str] = set()
    for c in items:
        m = _member(stored, c.user_id)
        touched = set(c.days) | (set(m[3]) if c.full and m is not None else set())
        names.update(day_field(c.user_id, d) for d in touched)
        days |= touched
    return sorted(names) + [keys.DAY_PREFIX + d for d in sorted(days)]


class Recompute(Exception):
    """A member took back an extreme or a last writer: the header is to be derived from
    every member's row (the step reads them all and plans again)."""


@dataclass
class CompanyPlan:
    to_set: dict[str, bytes] = field(default_factory=dict)
    to_delete: list[str] = field(default_factory=list)
    users_tab: dict[str, float | None] = field(default_factory=dict)  # user -> score, None out
    header: dict[str, Any] | None = None
    figures: dict[str, dict[str, Any]] = field(default_factory=dict)  # day -> sums it knows
    old_header: dict[str, Any] | None = None
    membership: Any = None  # (stored, new) segment membership, once evaluated


_NULL_LAST = 1e15  # users-tab score of a member never seen: after every real time


def tab_score(member: dict[str, Any]) -> float:
    """The users tab's order: last seen first, never seen last (then user id, the set's)."""
    at = member["last_seen_at"]
    return _NULL_LAST if at is None else float(-at)


def _counted(m: list[Any] | None) -> dict[str, Any] | None:
    if m is None or m[2] is None or m[2]["excluded"]:
        return None
    return dict(m[2])


def _move(sums: dict[str, Any] | None, fig: dict[str, Any] | None, sign: int) -> Any:
    """Add (sign 1) or take away (-1) one member's figures of a day from the day's sums; a
    day whose sums all fall to zero has no counted member left and goes (None)."""
    if fig is None:
        return sums
    acc = sums or {"e": 0, "s": 0, "ms": 0, "n": {}, "p": {}}
    acc = {**acc, "n": dict(acc["n"]), "p": dict(acc["p"])}
    for name in ("e", "s", "ms"):
        acc[name] += sign * fig[name]
    for name in ("n", "p"):
        counts = acc[name]
        for key, count in fig[name].items():
            left = counts.get(key, 0) + sign * count
            if left:
                counts[key] = left
            else:
                counts.pop(key, None)
    if not (acc["e"] or acc["s"] or acc["n"] or acc["p"]):
        return None
    return acc


def _winner_key(w: list[Any]) -> tuple[Any, ...]:
    """Last writer across users: (timestamp, event id, user id) — equal times and ids of two
    users go to the larger user id."""
    return (w[0], w[1], w[2])


def _fact_items(facts: dict[str, Any] | None) -> dict[str, list[Any]]:
    """A member's facts flat: "name", "created_at", "t:<trait>" -> [ts, event id, value]."""
    if facts is None:
        return {}
    out = {n: facts[n] for n in ("name", "created_at") if facts.get(n) is not None}
    out.update({"t:" + k: t for k, t in facts["traits"].items()})
    return out


def plan_company(
    stored: dict[str, bytes], items: list[Contribution], *, every_member: bool = False
) -> CompanyPlan | None:
    """Pure: the company step of fresh contributions from the fields `first_reads` and
    `second_reads` named, or None when none is new. Raises `Recompute` when the header must
    be derived from every member: then plan again with every `m:` field in `stored` too and
    `every_member`."""
    if not items:
        return None
    derive = False
    plan = CompanyPlan()
    old_h = decode_field(stored[keys.HEADER]) if keys.HEADER in stored else None
    plan.old_header = old_h
    winners = decode_field(stored[keys.FACT_WINNERS]) if keys.FACT_WINNERS in stored else {}
    counts = (
        decode_field(stored[keys.COMPANY_COUNTS])
        if keys.COMPANY_COUNTS in stored
        else {"named": 0, "users": 0, "sessions": 0, "first": None, "last": None, "days": []}
    )
    agg = {k: counts[k] for k in ("named", "users", "sessions")}
    first, last, days = counts["first"], counts["last"], set(counts["days"])
    sums: dict[str, Any] = {}
    members: dict[str, list[Any] | None] = {}
    entries: dict[str, list[Any] | None] = {}

    def member(user_id: str) -> list[Any] | None:
        if user_id not in members:
            members[user_id] = _member(stored, user_id)
        return members[user_id]

    def entry(user_id: str, day: str) -> list[Any] | None:
        name = day_field(user_id, day)
        if name not in entries:
            entries[name] = decode_field(stored[name]) if name in stored else None
        return entries[name]

    def day_sums(day: str) -> Any:
        if day not in sums:
            raw = stored.get(keys.DAY_PREFIX + day)
            sums[day] = None if raw is None else decode_field(raw)
        return sums[day]

    def put_day(user_id: str, day: str, fig: Any, version: int, floor: int) -> bool:
        """The member's figures of a day at `version`; False when it holds a newer one."""
        old = entry(user_id, day)
        old_version = floor if old is None else old[0]
        if version < old_version:
            return False
        old_fig = None if old is None else old[1]
        sums[day] = _move(_move(day_sums(day), old_fig, -1), fig, 1)
        entries[day_field(user_id, day)] = (
            [version, fig] if fig is not None or version > floor else None
        )
        return True

    for c in items:
        old = member(c.user_id)
        version0, facts0, row0, days0, floor0 = old if old is not None else (-1, None, None, [], -1)
        new_facts, new_row, version = facts0, row0, version0
        if c.version >= version0:
            new_facts, new_row, version = c.facts, c.member, c.version
        floor = floor0
        counted_days = set(days0)
        for day, fig in c.days.items():
            if put_day(c.user_id, day, fig, c.version, floor):
                (counted_days.add if fig is not None else counted_days.discard)(day)
        if c.full and c.version >= floor0:
            for day in sorted(set(days0) - set(c.days)):
                if put_day(c.user_id, day, None, c.version, floor):
                    counted_days.discard(day)
            floor = c.version
            for day in set(days0) | set(c.days):  # tombstones at or below the floor go
                e = entry(c.user_id, day)
                if e is not None and e[1] is None and e[0] <= floor:
                    entries[day_field(c.user_id, day)] = None
        new = [version, new_facts, new_row, sorted(counted_days), floor]
        members[c.user_id] = new
        # the header by differences
        agg["named"] += (new_facts is not None) - (facts0 is not None)
        before, after = _counted(old), _counted(new)
        agg["users"] += (after is not None) - (before is not None)
        agg["sessions"] += (after or {}).get("total_sessions", 0) - (before or {}).get(
            "total_sessions", 0
        )
        try:
            first = _extreme(first, before, after, "first_seen_at", min)
            last = _extreme(last, before, after, "last_seen_at", max)
            winners = _winners(winners, c.user_id, new_facts)
        except Recompute:
            derive = True
        if new_row is not None:
            plan.users_tab[c.user_id] = tab_score(new_row)
        elif row0 is not None or c.user_id in plan.users_tab:
            plan.users_tab[c.user_id] = None
    for user_id, m in members.items():
        if m is not None:
            plan.to_set[member_field(user_id)] = encode_field(m)
    for name, e in entries.items():
        if e is None:
            if name in stored:
                plan.to_delete.append(name)
        else:
            plan.to_set[name] = encode_field(e)
    for day, s in sums.items():
        name = keys.DAY_PREFIX + day
        if s is None:
            days.discard(day)
            if name in stored:
                plan.to_delete.append(name)
        else:
            days.add(day)
            plan.to_set[name] = encode_field(s)
            plan.figures[day] = s
    if derive:
        if not every_member:
            raise Recompute
        rows = {n: v for n, v in stored.items() if n.startswith(keys.MEMBER_PREFIX)}
        rows.update({n: v for n, v in plan.to_set.items() if n.startswith(keys.MEMBER_PREFIX)})
        winners, agg, first, last = derive_header(rows)
    plan.to_set[keys.FACT_WINNERS] = encode_field(winners)
    plan.to_set[keys.COMPANY_COUNTS] = encode_field(
        {**agg, "first": first, "last": last, "days": sorted(days)}
    )
    plan.header = _header(winners, agg, first, last, sorted(days))
    if plan.header is None:
        if keys.HEADER in stored:
            plan.to_delete.append(keys.HEADER)
    else:
        plan.to_set[keys.HEADER] = encode_field(plan.header)
    return plan


def _extreme(
    at: int | None,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    name: str,
    pick: Any,
) -> int | None:
    """The company's first (min) or last (max) seen after one member changed."""
    old = None if before is None else before[name]
    new = None if after is None else after[name]
    if old is not None and old == at and (new is None or pick(new, old) != new):
        raise Recompute  # the member held it and gives it back
    if new is None:
        return at
    return new if at is None else pick(at, new)


def _winners(
    winners: dict[str, list[Any]], user_id: str, new: dict[str, Any] | None
) -> dict[str, list[Any]]:
    """The last writer of each fact across members, after one member's facts changed."""
    out = dict(winners)
    mine = _fact_items(new)
    for key, w in winners.items():
        if w[2] == user_id:
            t = mine.get(key)
            if t is None or (t[0], t[1]) < (w[0], w[1]):
                raise Recompute  # the last writer took it back
            out[key] = [t[0], t[1], user_id, t[2]]
    for key, t in mine.items():
        candidate = [t[0], t[1], user_id, t[2]]
        if key not in out or _winner_key(candidate) > _winner_key(out[key]):
            out[key] = candidate
    return out


def _header(
    winners: dict[str, list[Any]],
    agg: dict[str, int],
    first: int | None,
    last: int | None,
    days: list[str],
) -> dict[str, Any] | None:
    """The header (None: no surviving identify names the company, which then does not exist
    — its members' rows stay, to outrank stale contributions)."""
    if agg["named"] <= 0:
        return None
    return {
        "name": winners["name"][3] if "name" in winners else None,
        "signed_up_at": winners["created_at"][3] if "created_at" in winners else None,
        "properties": {k[2:]: w[3] for k, w in sorted(winners.items()) if k.startswith("t:")},
        "first_seen_at": first,
        "last_seen_at": last,
        "total_sessions": agg["sessions"],
        "users_count": agg["users"],
        "days": days,
    }


def derive_header(
    rows: dict[str, bytes],
) -> tuple[dict[str, list[Any]], dict[str, int], int | None, int | None]:
    """Last writers, counts and first and last seen from every member's row (`m:` fields)."""
    winners: dict[str, list[Any]] = {}
    agg = {"named": 0, "users": 0, "sessions": 0}
    first: int | None = None
    last: int | None = None
    for name, raw in sorted(rows.items()):
        user_id = keys.unescape(name[len(keys.MEMBER_PREFIX) :])
        m = decode_field(raw)
        for key, t in _fact_items(m[1]).items():
            candidate = [t[0], t[1], user_id, t[2]]
            if key not in winners or _winner_key(candidate) > _winner_key(winners[key]):
                winners[key] = candidate
        agg["named"] += m[1] is not None
        counted = _counted(m)
        if counted is not None:
            agg["users"] += 1
            agg["sessions"] += counted["total_sessions"]
            if counted["first_seen_at"] is not None:
                f = counted["first_seen_at"]
                first = f if first is None else min(first, f)
            if counted["last_seen_at"] is not None:
                t = counted["last_seen_at"]
                last = t if last is None else max(last, t)
    return winners, agg, first, last
