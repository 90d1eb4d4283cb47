"""The pure fold: a user's records -> its state -> the fields of its projection (DESIGN.md §3).

No I/O here. The state is the *set* of the user's surviving records in a compact form (plus
the last writer of each context key), so folding is a set union: any order, any duplicates,
any batching gives the same state, and every view is then derived from that state alone —
in full by `project`, or only where added records change it by `project_added`.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_left
from dataclasses import dataclass, field
from typing import Any

import msgpack

from projections import keys
from projections.pagekey import page_key
from schemas.models import Command, Feedback, Identify, Page, Record, Track
from schemas.timefmt import day_of, parse_timestamp

# Compact interaction: [ts, type, a, b, c, d, e, page key of context.page_url or None]
#   track:    a=name
#   page:     a=page key of url, b=title
#   feedback: a=survey_id, b=survey_type, c=question, d=score, e=answer
#   content:  a=content_id, b=content_type, c=content_name, d=action, e=step
# Compact identify: [ts, traits, company or None]; company = [id, name, created_at, traits]
# Compact command:  [issued_at, command]
# Auto properties:  {context key: [ts, event_id, value]}, the last writer of each key only.
#   That is enough: a delete or retention that erases a key's last writer erases every
#   earlier row with that key too. (Of two different records under one id, a client bug,
#   the contexts of both count.)


DAY_MS = 86_400_000


def _pack(value: Any) -> bytes:
    return msgpack.packb(value, use_bin_type=True)


def _unpack(raw: bytes) -> Any:
    return msgpack.unpackb(raw, raw=False, strict_map_key=False)


class Unreadable(Exception):
    """A stored state that is not in this code's format."""


@dataclass
class UserState:
    interactions: dict[str, list[Any]] = field(default_factory=dict)
    identifies: dict[str, list[Any]] = field(default_factory=dict)
    commands: dict[str, list[Any]] = field(default_factory=dict)
    auto: dict[str, list[Any]] = field(default_factory=dict)

    def to_bytes(self) -> bytes:
        return _pack([self.interactions, self.identifies, self.commands, self.auto])

    @classmethod
    def from_bytes(cls, raw: bytes | None) -> UserState:
        """The stored state; `Unreadable` when it is not of this code's format (a namespace is
        written in one format, namespaces.FORMAT: anything else is damage, not a guess)."""
        if not raw:
            return cls()
        try:
            parts = _unpack(raw)
            if not (
                isinstance(parts, list)
                and len(parts) == 4
                and all(isinstance(p, dict) for p in parts)
            ):
                raise ValueError(f"a {type(parts).__name__} of {len(parts)} parts")
        except Exception as exc:
            why = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            raise Unreadable(f"a user state this version cannot read ({why})") from None
        return cls(*parts)

    @property
    def deleted_until(self) -> int | None:
        """The latest delete's time: records at or before it are erased."""
        times = [c[0] for c in self.commands.values() if c[1] == "delete"]
        return max(times) if times else None


def _context(record: Record) -> dict[str, str] | None:
    context = getattr(record, "context", None)
    if context is None:
        return None
    ctx = {k: v for k, v in context.model_dump().items() if v is not None}
    return ctx or None


def _merge_auto(auto: dict[str, list[Any]], ts: int, eid: str, ctx: dict[str, str] | None) -> None:
    for key, value in (ctx or {}).items():
        mine = [ts, eid, value]
        if key not in auto or mine > auto[key]:
            auto[key] = mine


def compact(record: Record) -> tuple[str, str, list[Any]]:
    """A record as (bucket, id, compact row). Only what some view needs is kept."""
    if isinstance(record, Command):
        return "c", record.command_id, [record.issued_at, record.command]
    if isinstance(record, Identify):
        company = record.company
        row = None
        if company is not None:
            row = [company.id, company.name, company.created_at, dict(company.traits)]
        return "d", record.event_id, [record.timestamp, dict(record.traits), row]
    url = record.context.page_url if record.context is not None else None
    page = page_key(url) if url else None
    ts = record.timestamp
    if isinstance(record, Track):
        return "i", record.event_id, [ts, "track", record.name, None, None, None, None, page]
    if isinstance(record, Page):
        return (
            "i",
            record.event_id,
            [ts, "page", page_key(record.url), record.title, None, None, None, page],
        )
    if isinstance(record, Feedback):
        return (
            "i",
            record.event_id,
            [
                ts,
                "feedback",
                record.survey_id,
                record.survey_type,
                record.question,
                record.score,
                record.answer,
                page,
            ],
        )
    return (
        "i",
        record.event_id,
        [
            ts,
            "content",
            record.content_id,
            record.content_type,
            record.content_name,
            record.action,
            record.step,
            page,
        ],
    )


def apply(
    state: UserState,
    records: list[Record],
    *,
    now_ms: int,
    retention_days: int,
    since_ms: int | None = None,
) -> UserState:
    """Fold records into a new state: set union by id, then erase what deletes and retention
    drop (and, in a namespace rebuilt `--since`, events before its floor; commands stay).

    Two different records with one id are a client bug; the one with the smaller encoding is
    kept so that the result still does not depend on order.
    """
    buckets = {
        "i": dict(state.interactions),
        "d": dict(state.identifies),
        "c": dict(state.commands),
    }
    auto = dict(state.auto)
    for record in records:
        bucket, rid, row = compact(record)
        if bucket == "i":
            _merge_auto(auto, row[0], rid, _context(record))
        rows = buckets[bucket]
        old = rows.get(rid)
        if old is None or (old != row and _pack(row) < _pack(old)):
            rows[rid] = row
    new = UserState(buckets["i"], buckets["d"], buckets["c"], auto)
    until = new.deleted_until
    oldest = now_ms - retention_days * 86_400_000
    if since_ms is not None:
        oldest = max(oldest, since_ms)
    times = [v[0] for v in new.interactions.values()] + [v[0] for v in new.identifies.values()]
    if until is None and min(times, default=oldest) >= oldest:
        return new  # nothing to erase

    def kept(at: int, is_delete: bool = False) -> bool:
        return at >= oldest and not erased_by_delete(at, is_delete, until)

    new.interactions = {k: v for k, v in new.interactions.items() if kept(v[0])}
    new.identifies = {k: v for k, v in new.identifies.items() if kept(v[0])}
    new.commands = {
        k: v for k, v in new.commands.items() if not erased_by_delete(v[0], v[1] == "delete", until)
    }
    new.auto = {k: v for k, v in new.auto.items() if kept(v[0])}
    return new


def erased_by_delete(at: int, is_delete: bool, until: int | None) -> bool:
    """§3 delete: a record at or before the latest delete's time is erased — except the delete
    commands themselves, which stay so that late records before them stay erased too."""
    return until is not None and at <= until and not is_delete


# ---- the projection ------------------------------------------------------------------------


def _ctx_page(ctx: dict[str, str] | None) -> str | None:
    url = ctx.get("page_url") if ctx else None
    return page_key(url) if url else None


def sessions_of(
    rows: list[tuple[str, list[Any]]], gap_ms: int
) -> list[list[tuple[str, list[Any]]]]:
    """Interactions sorted by (ts, event_id), split wherever the gap exceeds gap_ms."""
    sessions: list[list[tuple[str, list[Any]]]] = []
    last_ts: int | None = None
    for eid, row in rows:
        if last_ts is None or row[0] - last_ts > gap_ms:
            sessions.append([])
        sessions[-1].append((eid, row))
        last_ts = row[0]
    return sessions


def _breakdown_item(row: list[Any]) -> list[Any]:
    kind = row[1]
    if kind == "page":
        name = page = row[2]
    else:
        page = row[7]
        name = (row[4] or row[2]) if kind == "content" else row[2]
    return [row[0], kind, name, page]


def _order(kv: tuple[str, list[Any]]) -> tuple[int, str]:
    return kv[1][0], kv[0]


def _identity(state: UserState) -> tuple[dict[str, Any], list[Any] | None]:
    """Traits and company by last writer wins: a walk in (timestamp, event_id) order."""
    properties: dict[str, Any] = {}
    company: list[Any] | None = None
    for _eid, (_ts, traits, comp) in sorted(state.identifies.items(), key=_order):
        properties.update(traits)
        if comp is not None:
            company = comp
    return properties, company


def _day_fields(
    d: str, rows: list[tuple[str, list[Any]]], sessions: list[list[tuple[str, list[Any]]]]
) -> dict[str, Any]:
    """The `d:` and `s:` fields of one day, from its rows (by event time) and the sessions that
    start on it; {} when the day has nothing to show."""
    figures: dict[str, Any] | None = None
    if sessions:
        figures = {"e": 0, "s": len(sessions), "ms": 0, "n": {}, "p": {}}
    for _eid, row in rows:
        kind = row[1]
        if kind == "track" or kind == "page":
            if figures is None:
                figures = {"e": 0, "s": 0, "ms": 0, "n": {}, "p": {}}
            if kind == "track":
                figures["e"] += 1
                counts = figures["n"]
            else:
                counts = figures["p"]
            counts[row[2]] = counts.get(row[2], 0) + 1
    out: dict[str, Any] = {}
    if figures is not None:
        figures["ms"] = sum(s[-1][1][0] - s[0][1][0] for s in sessions)
        out[keys.DAY_PREFIX + d] = figures
    if sessions:
        out[keys.SESSIONS_PREFIX + d] = [
            [s[0][1][0], s[-1][1][0], [_breakdown_item(row) for _eid, row in s]] for s in sessions
        ]
    return out


def _feedback(rows: list[tuple[str, list[Any]]]) -> list[list[Any]]:
    return [
        [row[0], row[2], row[3], row[4], row[5], row[6], row[7]]
        for _eid, row in rows
        if row[1] == "feedback"
    ]


def _nps_latest(feedback: list[list[Any]]) -> int | None:
    nps = [f for f in feedback if f[2] == "nps"]
    return nps[-1][4] if nps else None


def _reset_at(state: UserState) -> int | None:
    resets = [c[0] for c in state.commands.values() if c[1] == "reset_content"]
    return max(resets) if resets else None


def _header(
    state: UserState,
    rows: list[tuple[str, list[Any]]],
    total_sessions: int,
    nps_latest: int | None,
    days: list[str],
) -> dict[str, Any]:
    properties, company = _identity(state)
    auto = {key: state.auto[key][2] for key in sorted(state.auto)}
    toggles = sorted(
        ((c[0], cid), c[1]) for cid, c in state.commands.items() if c[1] in ("exclude", "include")
    )
    return {
        "name": properties.get("name"),
        "email": properties.get("email"),
        "country": properties.get("country") or auto.get("country"),
        "company_id": company[0] if company else None,
        "company_name": company[1] if company else None,
        "signed_up_at": _created_at(properties.get("created_at")),
        "first_seen_at": rows[0][1][0] if rows else None,
        "last_seen_at": rows[-1][1][0] if rows else None,
        "total_sessions": total_sessions,
        "excluded": bool(toggles) and toggles[-1][1] == "exclude",
        "content_reset_at": _reset_at(state),
        "properties": properties,
        "auto_properties": auto,
        "nps_latest": nps_latest,
        "days": days,
    }


def project(state: UserState, gap_ms: int) -> dict[str, Any]:
    """Every field of the user's projection, as plain values; {} when the user does not exist."""
    if not state.interactions and not state.identifies:
        return {}
    rows = sorted(state.interactions.items(), key=_order)
    sessions = sessions_of(rows, gap_ms)
    rows_by_day: dict[str, list[tuple[str, list[Any]]]] = {}
    for item in rows:
        rows_by_day.setdefault(day_of(item[1][0]), []).append(item)
    sessions_by_day: dict[str, list[list[tuple[str, list[Any]]]]] = {}
    for session in sessions:
        sessions_by_day.setdefault(day_of(session[0][1][0]), []).append(session)
    fields: dict[str, Any] = {}
    for d in sorted(rows_by_day.keys() | sessions_by_day.keys()):
        fields.update(_day_fields(d, rows_by_day.get(d, []), sessions_by_day.get(d, [])))
    feedback = _feedback(rows)
    if feedback:
        fields[keys.FEEDBACK] = feedback
    engagement = _engagement(rows, _reset_at(state))
    if engagement:
        fields[keys.ENGAGEMENT] = engagement
    days = sorted(k[len(keys.DAY_PREFIX) :] for k in fields if k.startswith(keys.DAY_PREFIX))
    fields[keys.HEADER] = _header(state, rows, len(sessions), _nps_latest(feedback), days)
    return fields


def _projection_field(name: str) -> bool:
    return name in (keys.HEADER, keys.FEEDBACK, keys.ENGAGEMENT) or name.startswith(
        (keys.DAY_PREFIX, keys.SESSIONS_PREFIX)
    )


def project_added(
    old: UserState, new: UserState, stored: dict[str, bytes], gap_ms: int
) -> tuple[dict[str, Any], dict[str, bytes]] | None:
    """The projection of `new` when it is `old` plus interactions or identifies, computing only
    what the added records change: the days their sessions span, the header, and the
    feedback or engagement lists if they gained a row. `stored` holds the encoded projection
    of `old`. Returns (decoded header, days and engagement; encoded fields) equal to what
    `project(new)` gives — or None when something was taken away or replaced (a command,
    an erasure, retention, a row replaced under its id), where only the full projection
    will do.
    """
    if keys.HEADER not in stored or new.commands != old.commands:
        return None
    before, after = old.interactions, new.interactions
    if len(after) < len(before) or any(after.get(k) is not row for k, row in before.items()):
        return None
    added = {k: row for k, row in after.items() if k not in before}
    rows = sorted(after.items(), key=_order)
    sessions = sessions_of(rows, gap_ms)
    dirty: set[int] = set()  # days (since the epoch) that the sessions of added rows span
    for session in sessions:
        if added and any(eid in added for eid, _row in session):
            dirty.update(range(session[0][1][0] // DAY_MS, session[-1][1][0] // DAY_MS + 1))
    encoded = {k: v for k, v in stored.items() if _projection_field(k)}
    old_header = decode_field(stored[keys.HEADER])
    days = set(old_header["days"]) - {day_of(n * DAY_MS) for n in dirty}
    times = [row[0] for _eid, row in rows]
    for n in sorted(dirty):
        start, d = n * DAY_MS, day_of(n * DAY_MS)
        lo, hi = bisect_left(times, start), bisect_left(times, start + DAY_MS)
        starting = [s for s in sessions if start <= s[0][1][0] < start + DAY_MS]
        fresh = _day_fields(d, rows[lo:hi], starting)
        for name in (keys.DAY_PREFIX + d, keys.SESSIONS_PREFIX + d):
            if name in fresh:
                encoded[name] = encode_field(fresh[name])
            else:
                encoded.pop(name, None)
        if keys.DAY_PREFIX + d in fresh:
            days.add(d)
    kinds = {row[1] for row in added.values()}
    nps_latest = old_header["nps_latest"]
    if "feedback" in kinds:
        feedback = _feedback(rows)
        encoded[keys.FEEDBACK] = encode_field(feedback)
        nps_latest = _nps_latest(feedback)
    if "content" in kinds:
        encoded[keys.ENGAGEMENT] = encode_field(_engagement(rows, _reset_at(new)))
    header = _header(new, rows, len(sessions), nps_latest, sorted(days))
    encoded[keys.HEADER] = encode_field(header)
    projected: dict[str, Any] = {keys.HEADER: header}
    for d in header["days"]:
        projected[keys.DAY_PREFIX + d] = decode_field(encoded[keys.DAY_PREFIX + d])
    if keys.ENGAGEMENT in encoded:
        projected[keys.ENGAGEMENT] = decode_field(encoded[keys.ENGAGEMENT])
    return projected, encoded


def _created_at(value: Any) -> int | None:
    return None if value is None else parse_timestamp(value)


_STATUS = {
    "seen": "seen",
    "started": "in_progress",
    "step_completed": "in_progress",
    "clicked": "in_progress",
    "dismissed": "dismissed",
}


def _engagement(rows: list[tuple[str, list[Any]]], reset_at: int | None) -> list[list[Any]]:
    """Per content item, from rows already in (ts, event_id) order."""
    items: dict[str, list[list[Any]]] = {}
    for _eid, row in rows:
        if row[1] == "content":
            items.setdefault(row[2], []).append(row)
    out = []
    for content_id, events in items.items():
        latest = events[-1]
        names = [e[4] for e in events if e[4]]
        after = [e for e in events if reset_at is None or e[0] > reset_at]
        if any(e[5] == "completed" for e in after):
            status = "completed"
        elif after:
            status = _STATUS[after[-1][5]]
        else:
            status = "not_started"
        steps = sorted({e[6] for e in after if e[5] == "step_completed" and e[6] is not None})
        out.append(
            [
                content_id,
                latest[3],
                names[-1] if names else None,
                latest[5],
                latest[0],
                latest[7],
                len(events),
                status,
                steps,
            ]
        )
    out.sort(key=lambda item: (-item[4], item[0]))
    return out


def encode_fields(fields: dict[str, Any]) -> dict[str, bytes]:
    return {name: _pack(value) for name, value in fields.items()}


def encode_field(value: Any) -> bytes:
    return _pack(value)


def decode_field(raw: bytes) -> Any:
    return _unpack(raw)


def changes(old: dict[str, bytes], new: dict[str, bytes]) -> tuple[dict[str, bytes], list[str]]:
    """What to write to turn the stored fields `old` into `new`: (fields to set, to delete)."""
    to_set = {k: v for k, v in new.items() if old.get(k) != v}
    to_del = [k for k in old if k not in new]
    return to_set, to_del


# ---- what a user gives to its companies ----------------------------------------------------


def contributions(state: UserState, fields: dict[str, Any]) -> dict[str, list[Any]]:
    """company_id -> [facts, member, days]: this user's whole part in each company (§3).

    facts:  what this user's identifies say of the company, each as [ts, event_id, value] so
            the company side can take the last writer across users: {"name", "created_at",
            "traits": {key: [ts, event_id, value]}}; from every identify that carries it.
    member: the users-tab row, only for the user's current company.
    days:   the per-day figures, only for the current company and only when not excluded.
    """
    if not fields:
        return {}
    out: dict[str, list[Any]] = {}
    for eid, (ts, _traits, comp) in sorted(
        state.identifies.items(), key=lambda kv: (kv[1][0], kv[0])
    ):
        if comp is None:
            continue
        company_id, name, created_at, traits = comp
        facts = out.setdefault(
            company_id, [{"name": None, "created_at": None, "traits": {}}, None, {}]
        )[0]
        if name is not None:
            facts["name"] = [ts, eid, name]
        if created_at is not None:
            facts["created_at"] = [ts, eid, created_at]
        for key, value in traits.items():
            facts["traits"][key] = [ts, eid, value]
    header = fields[keys.HEADER]
    current = header["company_id"]
    if current is not None:
        part = out[current]
        part[1] = {
            "name": header["name"],
            "email": header["email"],
            "first_seen_at": header["first_seen_at"],
            "last_seen_at": header["last_seen_at"],
            "total_sessions": header["total_sessions"],
            "excluded": header["excluded"],
        }
        if not header["excluded"]:
            part[2] = {d: fields[keys.DAY_PREFIX + d] for d in header["days"]}
    return out


def digest(value: Any) -> str:
    """A short fingerprint of a value, to send a company only what changed."""
    return hashlib.blake2b(_pack(value), digest_size=10).hexdigest()
