"""The pure company fold: members' contributions -> the company projection (DESIGN.md §3).

A company hash keeps every member's latest contribution (`m:<user>`, with the user step's
version) and derives everything else from them, so a company is exactly the sum over its
current, non-excluded members, whatever order or how many times the contributions arrive.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from projections import keys
from projections.fold import decode_field, encode_field, encode_fields


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


def _lww(written: list[tuple[str, list[Any]]]) -> Any:
    """The value of the last writer by (timestamp, event_id, user_id) among (user, triple)."""
    if not written:
        return None
    return max(written, key=lambda w: (w[1][0], w[1][1], w[0]))[1][2]


def project_company(rows: dict[str, list[Any]]) -> dict[str, Any]:
    """Every derived field of a company from its member rows {user_id: [version, facts,
    member, days]}; {} when no surviving identify names the company."""
    facts = [(u, r[1]) for u, r in rows.items() if r[1] is not None]
    if not facts:
        return {}
    traits: dict[str, list[tuple[str, list[Any]]]] = {}
    for user_id, f in facts:
        for key, triple in f["traits"].items():
            traits.setdefault(key, []).append((user_id, triple))
    members = {u: r[2] for u, r in rows.items() if r[2] is not None}
    counted = {u: m for u, m in members.items() if not m["excluded"]}
    days: dict[str, dict[str, Any]] = {}
    for user_id in counted:
        for day, fig in rows[user_id][3].items():
            acc = days.setdefault(day, {"e": 0, "s": 0, "ms": 0, "n": Counter(), "p": Counter()})
            acc["e"] += fig["e"]
            acc["s"] += fig["s"]
            acc["ms"] += fig["ms"]
            acc["n"].update(fig["n"])
            acc["p"].update(fig["p"])
    first = [m["first_seen_at"] for m in counted.values() if m["first_seen_at"] is not None]
    last = [m["last_seen_at"] for m in counted.values() if m["last_seen_at"] is not None]
    fields: dict[str, Any] = {
        keys.DAY_PREFIX + d: {**f, "n": dict(f["n"]), "p": dict(f["p"])} for d, f in days.items()
    }
    users = sorted(
        ({"user_id": u, **m} for u, m in members.items()),
        key=lambda m: (m["last_seen_at"] is None, -(m["last_seen_at"] or 0), m["user_id"]),
    )
    fields[keys.COMPANY_USERS] = [
        [m["user_id"], m["name"], m["email"], m["last_seen_at"], m["total_sessions"], m["excluded"]]
        for m in users
    ]
    fields[keys.HEADER] = {
        "name": _lww([(u, f["name"]) for u, f in facts if f["name"] is not None]),
        "signed_up_at": _lww(
            [(u, f["created_at"]) for u, f in facts if f["created_at"] is not None]
        ),
        "properties": {key: _lww(triples) for key, triples in sorted(traits.items())},
        "first_seen_at": min(first) if first else None,
        "last_seen_at": max(last) if last else None,
        "total_sessions": sum(m["total_sessions"] for m in counted.values()),
        "users_count": len(counted),
        "days": sorted(days),
    }
    return fields


def plan_company(
    stored: dict[str, bytes], items: list[Contribution]
) -> tuple[dict[str, bytes], dict[str, bytes], dict[str, Any]] | None:
    """Pure: the stored fields, the new fields and the projected (decoded) ones after applying
    contributions to a stored company, or None if none is new.

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
    for c in fresh:
        old = rows.get(c.user_id)
        if old is None or c.version >= old[0]:
            rows[c.user_id] = [c.version, c.facts, c.member, c.days]
        if c.topic:
            name = keys.fence_field(c.topic, c.partition)
            fences[name] = max(fences.get(name, -1), c.offset)
    projected = project_company(rows)
    new = encode_fields(projected)
    for user_id, row in rows.items():  # rows of users who left stay, to outrank stale messages
        new[keys.MEMBER_PREFIX + keys.escape(user_id)] = encode_field(row)
    new.update({name: str(offset).encode() for name, offset in fences.items()})
    old_fields = {k: v for k, v in stored.items() if k != keys.VERSION}
    return old_fields, new, projected
