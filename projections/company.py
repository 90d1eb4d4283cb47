"""The pure company fold: members' contributions -> the company projection (DESIGN.md §3).

A company hash keeps every member's latest contribution, with the user step's version:
`m:<user>` holds what the header needs (facts and the users-tab row) and `md:<user>` the
member's per-day figures. A company is exactly the sum over its current, non-excluded members
whatever order or how many times the contributions arrive: the header is derived from the
small `m:` rows, and the per-day sums `d:<day>` move by the difference between a member's
stored and new figures, so a step reads and writes only the days its members touch — not
every member's every day.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from projections import keys
from projections.fold import decode_field, encode_field


@dataclass(frozen=True)
class Contribution:
    """One message of profiles.company-deltas, where it was read from."""

    app_id: str
    company_id: str
    user_id: str
    version: int
    facts: dict[str, Any] | None
    member: dict[str, Any] | None
    days: dict[str, dict[str, Any]]
    namespace: str  # the projection namespace of the user step that made it
    topic: str = ""  # "" when handed over in-process (replay), not read from a topic
    partition: int = 0
    offset: int = -1


def member_days_field(user_id: str) -> str:
    return keys.MEMBER_DAYS_PREFIX + keys.escape(user_id)


def needed_fields(items: list[Contribution]) -> list[str]:
    """The `md:` fields a step on these contributions reads besides the rest of the hash."""
    return sorted({member_days_field(c.user_id) for c in items})


def _lww(written: list[tuple[str, list[Any]]]) -> Any:
    """The value of the last writer by (timestamp, event_id, user_id) among (user, triple)."""
    if not written:
        return None
    return max(written, key=lambda w: (w[1][0], w[1][1], w[0]))[1][2]


def _move(sums: dict[str, dict[str, Any]], days: dict[str, dict[str, Any]], sign: int) -> None:
    """Add (sign 1) or take away (sign -1) one member's per-day figures from the sums.

    Every day a user has carries a session, a track event or a page view, so a day whose
    sums all fall to zero has no counted member left and goes."""
    for day, fig in days.items():
        acc = sums.setdefault(day, {"e": 0, "s": 0, "ms": 0, "n": {}, "p": {}})
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
            del sums[day]


_USERS_TAB = ("user_id", "name", "email", "last_seen_at", "total_sessions", "excluded")


def project_header(rows: dict[str, list[Any]], days: list[str]) -> dict[str, Any]:
    """The header and the users tab from the member rows {user_id: [version, facts, member]};
    {} when no surviving identify names the company."""
    facts = [(u, r[1]) for u, r in rows.items() if r[1] is not None]
    if not facts:
        return {}
    traits: dict[str, list[tuple[str, list[Any]]]] = {}
    for user_id, f in facts:
        for key, triple in f["traits"].items():
            traits.setdefault(key, []).append((user_id, triple))
    members = {u: r[2] for u, r in rows.items() if r[2] is not None}
    counted = [m for m in members.values() if not m["excluded"]]
    first = [m["first_seen_at"] for m in counted if m["first_seen_at"] is not None]
    last = [m["last_seen_at"] for m in counted if m["last_seen_at"] is not None]
    users = sorted(
        ({"user_id": u, **m} for u, m in members.items()),
        key=lambda m: (m["last_seen_at"] is None, -(m["last_seen_at"] or 0), m["user_id"]),
    )
    return {
        keys.COMPANY_USERS: [[m[name] for name in _USERS_TAB] for m in users],
        keys.HEADER: {
            "name": _lww([(u, f["name"]) for u, f in facts if f["name"] is not None]),
            "signed_up_at": _lww(
                [(u, f["created_at"]) for u, f in facts if f["created_at"] is not None]
            ),
            "properties": {key: _lww(triples) for key, triples in sorted(traits.items())},
            "first_seen_at": min(first) if first else None,
            "last_seen_at": max(last) if last else None,
            "total_sessions": sum(m["total_sessions"] for m in counted),
            "users_count": len(counted),
            "days": days,
        },
    }


def plan_company(
    stored: dict[str, bytes], items: list[Contribution]
) -> tuple[dict[str, bytes], dict[str, bytes], dict[str, Any]] | None:
    """Pure: the stored fields, the new fields and the projected (decoded) ones after applying
    contributions to a stored company, or None if none is new.

    `stored` is the company hash without `md:` fields except those of `needed_fields(items)`.
    A contribution replaces the member's row when its user-step version is at least the
    stored one: redelivered or stale messages change nothing, and the message of a step
    that was retried after a crash wins over the attempt it replaces.
    """
    fences = {k: int(v) for k, v in stored.items() if k.startswith(keys.FENCE_PREFIX)}
    fresh = [
        c
        for c in items
        if not c.topic or c.offset > fences.get(keys.fence_field(c.topic, c.partition), -1)
    ]
    if not fresh:
        return None
    rows = {
        keys.unescape(k[len(keys.MEMBER_PREFIX) :]): decode_field(v)
        for k, v in stored.items()
        if k.startswith(keys.MEMBER_PREFIX)
    }
    taken: dict[str, dict[str, dict[str, Any]]] = {}  # user -> the days of its accepted row
    for c in fresh:
        old = rows.get(c.user_id)
        if old is None or c.version >= old[0]:
            rows[c.user_id] = [c.version, c.facts, c.member]
            taken[c.user_id] = c.days
        if c.topic:
            name = keys.fence_field(c.topic, c.partition)
            fences[name] = max(fences.get(name, -1), c.offset)
    sums = {
        k[len(keys.DAY_PREFIX) :]: decode_field(v)
        for k, v in stored.items()
        if k.startswith(keys.DAY_PREFIX)
    }
    old_fields = {k: v for k, v in stored.items() if k != keys.VERSION}
    new = dict(old_fields)
    touched: set[str] = set()
    for user_id, days in taken.items():
        name = member_days_field(user_id)
        before = decode_field(stored[name]) if name in stored else {}
        _move(sums, before, -1)
        _move(sums, days, 1)
        touched.update(before, days)
        if days:
            new[name] = encode_field(days)
        else:
            new.pop(name, None)
        new[keys.MEMBER_PREFIX + keys.escape(user_id)] = encode_field(rows[user_id])
    for day in touched:
        if day in sums:
            new[keys.DAY_PREFIX + day] = encode_field(sums[day])
        else:
            new.pop(keys.DAY_PREFIX + day, None)
    derived = project_header(rows, sorted(sums))
    if derived:
        new.update({k: encode_field(v) for k, v in derived.items()})
    else:  # rows of users who left stay, to outrank stale messages; nothing is shown
        for name in (keys.HEADER, keys.COMPANY_USERS):
            new.pop(name, None)
    new.update({name: str(offset).encode() for name, offset in fences.items()})
    projected = {**derived, **{keys.DAY_PREFIX + d: f for d, f in sums.items()}} if derived else {}
    return old_fields, new, projected
