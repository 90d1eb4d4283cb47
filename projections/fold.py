"""The pure fold: a user's records -> its state -> the fields of its projection (docs/design.md §3).

No I/O here. The state is what every view of a user is a function of: the *set* of its
surviving interactions (compact rows by event id), its commands, and the last writer of each
trait, of its company, of each company's facts and of each context key. Last writers are
enough for everything identifies and contexts decide: a delete and the retention both erase
a prefix in time, and a prefix that takes a last writer takes every earlier candidate with
it. Folding is a set union plus last-writer-wins: any order, any duplicates, any batching
give the same state. Every view is derived from the state — here in full (`project`), or,
when a step only adds records, for just the days they touch (projections/days.py).

The state is stored split (`state_fields`): the interaction rows of each UTC day in a field
of their own, and one small index (`Index`) of the rest, so that a step reads what it
touches, not the user's whole history.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import msgpack

from projections import keys
from projections.pagekey import page_key
from schemas.models import (
    Alias,
    Command,
    Content,
    Context,
    Feedback,
    Identify,
    Page,
    Record,
    Track,
)
from schemas.timefmt import day_of, parse_timestamp

# Compact interaction: [ts, type, a, b, c, d, e, page key of context.page_url or None]
#   track:    a=name
#   page:     a=page key of url, b=title
#   feedback: a=survey_id, b=survey_type, c=question, d=score, e=answer
#   content:  a=content_id, b=content_type, c=content_name, d=action, e=step
# Command:    [issued_at, command]
# Last writer ("triple"): [ts, event_id, value]
# Company row of an identify: [id, name, created_at, traits]
# Facts of one company (from every identify naming it): {"at": [ts, event_id] of the latest,
#   "name": triple or None, "created_at": triple or None, "traits": {key: triple}}

DAY_MS = 86_400_000

Interaction = Track | Page | Feedback | Content
Event = Identify | Interaction  # every record but commands


def _pack(value: Any) -> bytes:
    return msgpack.packb(value, use_bin_type=True)


def _unpack(raw: bytes) -> Any:
    return msgpack.unpackb(raw, raw=False, strict_map_key=False)


class Unreadable(Exception):
    """A stored state that is not in this code's format."""


def newer(mine: list[Any], theirs: list[Any] | None) -> bool:
    """Last writer wins by (timestamp, event id). Two different values under one id (a client
    bug) resolve to the smaller encoding, so the result still does not depend on order."""
    if theirs is None:
        return True
    if (mine[0], mine[1]) != (theirs[0], theirs[1]):
        return bool((mine[0], mine[1]) > (theirs[0], theirs[1]))
    return _pack(mine[2:]) < _pack(theirs[2:])


@dataclass
class UserState:
    interactions: dict[str, list[Any]] = field(default_factory=dict)  # event id -> row
    commands: dict[str, list[Any]] = field(default_factory=dict)  # command id -> row
    traits: dict[str, list[Any]] = field(default_factory=dict)  # trait -> triple
    company: list[Any] | None = None  # [ts, event id, company row] of the latest naming one
    facts: dict[str, dict[str, Any]] = field(default_factory=dict)  # company id -> facts
    auto: dict[str, list[Any]] = field(default_factory=dict)  # context key -> triple
    identified: list[Any] | None = None  # [ts, event id] of the latest identify

    def copied(self, *, rows: bool = True) -> UserState:
        """A copy whose dicts may be changed (without the rows: only the commands and last
        writers)."""
        return UserState(
            dict(self.interactions) if rows else {},
            dict(self.commands),
            dict(self.traits),
            self.company,
            dict(self.facts),
            dict(self.auto),
            self.identified,
        )

    @property
    def deleted_until(self) -> int | None:
        """The latest delete's time: records at or before it are erased."""
        return deleted_until(self.commands)

    @property
    def exists(self) -> bool:
        """A user exists while one of its non-command records survives (§4)."""
        return bool(self.interactions) or self.identified is not None


def deleted_until(commands: dict[str, list[Any]]) -> int | None:
    times = [c[0] for c in commands.values() if c[1] == "delete"]
    return max(times) if times else None


_CONTEXT_FIELDS = tuple(Context.model_fields)


def _context(record: Record) -> dict[str, str] | None:
    """The context fields the record carries (read off the model: `model_dump` per record
    was a noticeable share of a step)."""
    context = getattr(record, "context", None)
    if context is None:
        return None
    ctx = {k: v for k in _CONTEXT_FIELDS if (v := getattr(context, k)) is not None}
    return ctx or None


def compact(record: Interaction) -> list[Any]:
    """An interaction as its compact row: only what some view needs is kept."""
    url = record.context.page_url if record.context is not None else None
    page = page_key(url) if url else None
    ts = record.timestamp
    if isinstance(record, Track):
        return [ts, "track", record.name, None, None, None, None, page]
    if isinstance(record, Page):
        return [ts, "page", page_key(record.url), record.title, None, None, None, page]
    if isinstance(record, Feedback):
        return [
            ts,
            "feedback",
            record.survey_id,
            record.survey_type,
            record.question,
            record.score,
            record.answer,
            page,
        ]
    return [
        ts,
        "content",
        record.content_id,
        record.content_type,
        record.content_name,
        record.action,
        record.step,
        page,
    ]


def merge_identify(target: UserState | Index, record: Identify) -> None:
    """Fold one identify into the last writers of `target` (a state or an index whose dicts
    were copied for this step)."""
    ts, eid = record.timestamp, record.event_id
    if target.identified is None or (ts, eid) > tuple(target.identified):
        target.identified = [ts, eid]
    for key, value in record.traits.items():
        mine = [ts, eid, value]
        if newer(mine, target.traits.get(key)):
            target.traits[key] = mine
    comp = record.company
    if comp is None:
        return
    row = [comp.id, comp.name, comp.created_at, dict(comp.traits)]
    if newer([ts, eid, row], target.company):
        target.company = [ts, eid, row]
    mine_facts = target.facts.get(comp.id)
    f = (
        {"at": None, "name": None, "created_at": None, "traits": {}}
        if mine_facts is None
        else {**mine_facts, "traits": dict(mine_facts["traits"])}
    )
    if f["at"] is None or (ts, eid) > tuple(f["at"]):
        f["at"] = [ts, eid]
    for name, value in (("name", comp.name), ("created_at", comp.created_at)):
        if value is not None and newer([ts, eid, value], f[name]):
            f[name] = [ts, eid, value]
    for key, value in comp.traits.items():
        if newer([ts, eid, value], f["traits"].get(key)):
            f["traits"][key] = [ts, eid, value]
    target.facts[comp.id] = f


def merge_context(auto: dict[str, list[Any]], record: Interaction) -> None:
    for key, value in (_context(record) or {}).items():
        mine = [record.timestamp, record.event_id, value]
        if newer(mine, auto.get(key)):
            auto[key] = mine


def merge_row(rows: dict[str, list[Any]], eid: str, row: list[Any]) -> bool:
    """Put a row in; False when the id holds a different row already (the smaller encoding
    is kept: two different records under one id are a client bug)."""
    old = rows.get(eid)
    if old is None or old == row:
        rows[eid] = row
        return old is None or old == row
    if _pack(row) < _pack(old):
        rows[eid] = row
    return False


def merge_command(commands: dict[str, list[Any]], record: Command) -> None:
    merge_command_row(commands, record.command_id, [record.issued_at, record.command])


def merge_command_row(commands: dict[str, list[Any]], command_id: str, row: list[Any]) -> None:
    """Two different commands under one id (a client bug): the smaller encoding is kept."""
    old = commands.get(command_id)
    if old is None or (old != row and _pack(row) < _pack(old)):
        commands[command_id] = row


def apply(
    state: UserState,
    records: list[Record],
    *,
    now_ms: int,
    retention_days: int,
    since_ms: int | None = None,
) -> UserState:
    """Fold records into a new state: set union by id and last writers, then erase what
    deletes and retention drop (and, in a namespace rebuilt `--since`, events before its
    floor; commands stay)."""
    new = state.copied()
    for record in records:
        if isinstance(record, Command):
            merge_command(new.commands, record)
        elif isinstance(record, Identify):
            merge_identify(new, record)
        elif isinstance(record, Alias):
            continue  # a link, not data (docs/design.md §7): projections/origins.py
        else:
            merge_row(new.interactions, record.event_id, compact(record))
            merge_context(new.auto, record)
    erase(new, oldest(now_ms, retention_days, since_ms))
    return new


def oldest(now_ms: int, retention_days: int, since_ms: int | None) -> int:
    """Event times before this leave the state: the retention, and a namespace's floor."""
    at = now_ms - retention_days * DAY_MS
    return at if since_ms is None else max(at, since_ms)


def erase(state: UserState | Index, floor: int) -> None:
    """Drop (in place, from a state or an index whose dicts were copied for this step) what
    the latest delete and the floor erase; an index's rows are the caller's to drop."""
    until = deleted_until(state.commands)

    def kept(at: int) -> bool:
        return at >= floor and (until is None or at > until)

    if isinstance(state, UserState):
        state.interactions = {k: v for k, v in state.interactions.items() if kept(v[0])}
    if state.identified is not None and not kept(state.identified[0]):
        state.identified = None
    state.commands = {
        k: v
        for k, v in state.commands.items()
        if not erased_by_delete(v[0], v[1] == "delete", until)
    }
    state.traits = {k: v for k, v in state.traits.items() if kept(v[0])}
    state.auto = {k: v for k, v in state.auto.items() if kept(v[0])}
    if state.company is not None and not kept(state.company[0]):
        state.company = None
    state.facts = {c: f for c, f in state.facts.items() if kept(f["at"][0])}
    for company_id, f in list(state.facts.items()):
        f = {**f, "traits": {k: t for k, t in f["traits"].items() if kept(t[0])}}
        for name in ("name", "created_at"):
            if f[name] is not None and not kept(f[name][0]):
                f[name] = None
        state.facts[company_id] = f


def erased_by_delete(at: int, is_delete: bool, until: int | None) -> bool:
    """§3 delete: a record at or before the latest delete's time is erased — except the delete
    commands themselves, which stay so that late records before them stay erased too."""
    return until is not None and at <= until and not is_delete


# ---- the projection ------------------------------------------------------------------------


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


def order(kv: tuple[str, list[Any]]) -> tuple[int, str]:
    return kv[1][0], kv[0]


def day_fields(
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


def feedback_item(eid: str, row: list[Any]) -> list[Any]:
    """A response as the `fb` field keeps it (oldest first; the event id orders equal times)."""
    return [row[0], row[2], row[3], row[4], row[5], row[6], row[7], eid]


def nps_latest(feedback: list[list[Any]]) -> int | None:
    nps = [f for f in feedback if f[2] == "nps"]
    return nps[-1][4] if nps else None


def reset_at(commands: dict[str, list[Any]]) -> int | None:
    resets = [c[0] for c in commands.values() if c[1] == "reset_content"]
    return max(resets) if resets else None


def excluded(commands: dict[str, list[Any]]) -> bool:
    toggles = sorted(
        ((c[0], cid), c[1]) for cid, c in commands.items() if c[1] in ("exclude", "include")
    )
    return bool(toggles) and toggles[-1][1] == "exclude"


def header(
    state: UserState,
    first_seen: int | None,
    last_seen: int | None,
    total_sessions: int,
    nps: int | None,
    days: list[str],
) -> dict[str, Any]:
    properties = {key: state.traits[key][2] for key in sorted(state.traits)}
    company = state.company[2] if state.company is not None else None
    auto = {key: state.auto[key][2] for key in sorted(state.auto)}
    return {
        "name": properties.get("name"),
        "email": properties.get("email"),
        "country": properties.get("country") or auto.get("country"),
        "company_id": company[0] if company else None,
        "company_name": company[1] if company else None,
        "signed_up_at": _created_at(properties.get("created_at")),
        "first_seen_at": first_seen,
        "last_seen_at": last_seen,
        "total_sessions": total_sessions,
        "excluded": excluded(state.commands),
        "content_reset_at": reset_at(state.commands),
        "properties": properties,
        "auto_properties": auto,
        "nps_latest": nps,
        "days": days,
    }


def project(state: UserState, gap_ms: int) -> tuple[dict[str, Any], dict[str, list[Any]]]:
    """Every field of the user's projection, as plain values ({} when the user does not
    exist), and the engagement keys the index keeps (see `engagement`)."""
    if not state.exists:
        return {}, {}
    rows = sorted(state.interactions.items(), key=order)
    sessions = sessions_of(rows, gap_ms)
    rows_by_day: dict[str, list[tuple[str, list[Any]]]] = {}
    for item in rows:
        rows_by_day.setdefault(day_of(item[1][0]), []).append(item)
    sessions_by_day: dict[str, list[list[tuple[str, list[Any]]]]] = {}
    for session in sessions:
        sessions_by_day.setdefault(day_of(session[0][1][0]), []).append(session)
    fields: dict[str, Any] = {}
    for d in sorted(rows_by_day.keys() | sessions_by_day.keys()):
        fields.update(day_fields(d, rows_by_day.get(d, []), sessions_by_day.get(d, [])))
    feedback = [feedback_item(eid, row) for eid, row in rows if row[1] == "feedback"]
    if feedback:
        fields[keys.FEEDBACK] = feedback
    items, internals = engagement(rows, reset_at(state.commands))
    if items:
        fields[keys.ENGAGEMENT] = items
    days = sorted(k[len(keys.DAY_PREFIX) :] for k in fields if k.startswith(keys.DAY_PREFIX))
    first = rows[0][1][0] if rows else None
    last = rows[-1][1][0] if rows else None
    fields[keys.HEADER] = header(state, first, last, len(sessions), nps_latest(feedback), days)
    return fields, internals


def _created_at(value: Any) -> int | None:
    return None if value is None else parse_timestamp(value)


STATUS = {
    "seen": "seen",
    "started": "in_progress",
    "step_completed": "in_progress",
    "clicked": "in_progress",
    "dismissed": "dismissed",
}


def engagement(
    rows: list[tuple[str, list[Any]]], reset: int | None
) -> tuple[list[list[Any]], dict[str, list[Any]]]:
    """Per content item, from rows in (ts, event_id) order: the `en` items, and per item the
    keys a later event is compared with — [latest event id, (ts, id) of the latest event with
    a name, (ts, id) of the latest event after the reset] — so that an added event updates
    its item without the others (days.py)."""
    by_item: dict[str, list[tuple[str, list[Any]]]] = {}
    for eid, row in rows:
        if row[1] == "content":
            by_item.setdefault(row[2], []).append((eid, row))
    out, internals = [], {}
    for content_id, events in by_item.items():
        latest_eid, latest = events[-1]
        named = [(eid, e) for eid, e in events if e[4]]
        after = [(eid, e) for eid, e in events if reset is None or e[0] > reset]
        if any(e[5] == "completed" for _eid, e in after):
            status = "completed"
        elif after:
            status = STATUS[after[-1][1][5]]
        else:
            status = "not_started"
        steps = sorted({e[6] for _eid, e in after if e[5] == "step_completed" and e[6] is not None})
        out.append(
            [
                content_id,
                latest[3],
                named[-1][1][4] if named else None,
                latest[5],
                latest[0],
                latest[7],
                len(events),
                status,
                steps,
            ]
        )
        internals[content_id] = [
            latest_eid,
            [named[-1][1][0], named[-1][0]] if named else None,
            [after[-1][1][0], after[-1][0]] if after else None,
        ]
    out.sort(key=lambda item: (-item[4], item[0]))
    return out, internals


# ---- the stored form ------------------------------------------------------------------------


@dataclass
class Index:
    """Everything of the state but the rows (field `_x`): per day with rows its first and
    last row's time (so a step knows which neighbour days a session can reach), the commands,
    the last writers, and the engagement keys."""

    days: dict[str, list[int]] = field(default_factory=dict)
    commands: dict[str, list[Any]] = field(default_factory=dict)
    traits: dict[str, list[Any]] = field(default_factory=dict)
    company: list[Any] | None = None
    facts: dict[str, dict[str, Any]] = field(default_factory=dict)
    auto: dict[str, list[Any]] = field(default_factory=dict)
    engagement: dict[str, list[Any]] = field(default_factory=dict)
    identified: list[Any] | None = None
    # what an id merged into another, or holding others, keeps of its merges (origins.py)
    identity: list[Any] | None = None

    def to_bytes(self) -> bytes:
        """Keys sorted: the same index is the same bytes, however it was made. An index
        without merges is 8 parts, as before merges existed."""
        facts = {c: {**f, "traits": _sorted(f["traits"])} for c, f in self.facts.items()}
        parts = [
            _sorted(self.days),
            _sorted(self.commands),
            _sorted(self.traits),
            self.company,
            _sorted(facts),
            _sorted(self.auto),
            _sorted(self.engagement),
            self.identified,
        ]
        return _pack(parts if self.identity is None else [*parts, self.identity])

    def copy(self) -> Index:
        """A copy whose dicts a step may change."""
        return Index(
            dict(self.days),
            dict(self.commands),
            dict(self.traits),
            self.company,
            dict(self.facts),
            dict(self.auto),
            dict(self.engagement),
            self.identified,
            self.identity,
        )

    @classmethod
    def from_bytes(cls, raw: bytes | None) -> Index:
        """`Unreadable` when it is not of this code's format (a namespace is written in one
        format, namespaces.FORMAT: anything else is damage, not something to guess at).
        Shared between the calls of one step that read it: not to be changed (`copy`)."""
        if not raw:
            return cls()
        return _index(raw)

    def state(self, interactions: dict[str, list[Any]]) -> UserState:
        return UserState(
            interactions,
            dict(self.commands),
            dict(self.traits),
            self.company,
            dict(self.facts),
            dict(self.auto),
            self.identified,
        )


@lru_cache(maxsize=256)
def _index(raw: bytes) -> Index:
    """A stored index, read once per distinct bytes (a step reads it twice: to plan its reads,
    then to fold). 256: a live batch's users; a bulk batch has more and parses twice, which
    costs less than the memory of keeping thousands (tests/faults/test_flood.py)."""
    try:
        parts = _unpack(raw)
        if not (isinstance(parts, list) and len(parts) in (8, 9)):
            raise ValueError(f"a {type(parts).__name__} of {len(parts)} parts")
        return Index(*parts)
    except Exception as exc:
        why = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        raise Unreadable(f"a user state this version cannot read ({why})") from None


def _sorted(d: dict[str, Any]) -> dict[str, Any]:
    return dict(sorted(d.items()))


def pack_rows(rows: dict[str, list[Any]]) -> bytes:
    """One day's rows as stored, by event id (the same rows are the same bytes)."""
    return _pack(_sorted(rows))


def rows_field(day: str) -> str:
    return keys.ROWS_PREFIX + day


def read_rows(raw: bytes | None) -> dict[str, list[Any]]:
    """One day's rows, {event id: row}."""
    if raw is None:
        return {}
    try:
        rows = _unpack(raw)
        if not isinstance(rows, dict):
            raise ValueError(type(rows).__name__)
        return rows
    except Exception as exc:
        raise Unreadable(f"a day of rows this version cannot read ({exc})") from None


def index_of(
    state: UserState, engagement_keys: dict[str, list[Any]], identity: list[Any] | None = None
) -> tuple[Index, dict[str, dict[str, list[Any]]]]:
    """The index of a state, and its rows by day."""
    by_day: dict[str, dict[str, list[Any]]] = {}
    for eid, row in state.interactions.items():
        by_day.setdefault(day_of(row[0]), {})[eid] = row
    days = {
        d: [min(r[0] for r in rows.values()), max(r[0] for r in rows.values())]
        for d, rows in by_day.items()
    }
    index = Index(
        days,
        state.commands,
        state.traits,
        state.company,
        state.facts,
        state.auto,
        engagement_keys,
        state.identified,
        identity,
    )
    return index, by_day


def state_fields(
    state: UserState, engagement_keys: dict[str, list[Any]], identity: list[Any] | None = None
) -> dict[str, bytes]:
    """The state as stored: the rows of each day, and the index."""
    index, by_day = index_of(state, engagement_keys, identity)
    out = {rows_field(d): pack_rows(rows) for d, rows in by_day.items()}
    out[keys.INDEX] = index.to_bytes()
    return out


def stored_state(fields: dict[str, bytes]) -> tuple[UserState, Index]:
    """The whole state from every stored field of a user (`Unreadable` if a day is missing)."""
    index = Index.from_bytes(fields.get(keys.INDEX))
    interactions: dict[str, list[Any]] = {}
    for d in index.days:
        name = rows_field(d)
        if name not in fields:
            raise Unreadable(f"the rows of {d}, which the index lists, are missing")
        interactions.update(read_rows(fields[name]))
    return index.state(interactions), index


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


def company_facts(state_facts: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """What this user's identifies say of each company, as the company side takes them:
    {"name", "created_at", "traits": {key: triple}} (last writers, compared across users)."""
    return {
        c: {"name": f["name"], "created_at": f["created_at"], "traits": f["traits"]}
        for c, f in state_facts.items()
    }


def member_row(h: dict[str, Any]) -> dict[str, Any]:
    """The user's row in its current company's users tab."""
    return {
        "name": h["name"],
        "email": h["email"],
        "first_seen_at": h["first_seen_at"],
        "last_seen_at": h["last_seen_at"],
        "total_sessions": h["total_sessions"],
        "excluded": h["excluded"],
    }


def digest(value: Any) -> str:
    """A short fingerprint of a value, to send a company only what changed."""
    return hashlib.blake2b(_pack(value), digest_size=10).hexdigest()


@dataclass
class Part:
    """What a user gives one company at one version: the facts its identifies state of it,
    its users-tab row (current company only), and its per-day figures (current company and
    not excluded) — `full`: every day it counts there (the company forgets any other), else
    only the days that changed (None: the day is gone)."""

    facts: dict[str, Any] | None
    member: dict[str, Any] | None
    days: dict[str, Any]
    full: bool


def parts(
    old_facts: dict[str, dict[str, Any]],
    new_facts: dict[str, dict[str, Any]],
    old_h: dict[str, Any] | None,
    new_h: dict[str, Any] | None,
    figures: dict[str, dict[str, Any]],
    changed: list[str],
    *,
    full: bool,
) -> dict[str, Part]:
    """company_id -> the user's part in it after a step (§3: a company sums its current,
    non-excluded members' days). `figures` holds the new figures of the changed days — and of
    every day when the user joins a company (it then counts all of them there) or `full`.
    A step that only added records (`full` False) sends days that changed where the user
    counted before and still does."""

    def counted(h: dict[str, Any] | None) -> str | None:
        return None if h is None or h["excluded"] else h["company_id"]

    before, after = counted(old_h), counted(new_h)
    current = None if new_h is None else new_h["company_id"]
    facts = company_facts(new_facts)
    out = {}
    named = old_facts.keys() | new_facts.keys() | {c for c in (before, after) if c is not None}
    for company in sorted(named):
        member = member_row(new_h) if new_h is not None and company == current else None
        if full or (company == after) != (company == before):
            every: dict[str, Any] = {}
            if company == after and new_h is not None:
                every = {d: figures[d] for d in new_h["days"]}
            out[company] = Part(facts.get(company), member, every, True)
        else:
            days = {d: figures.get(d) for d in changed} if company == after else {}
            out[company] = Part(facts.get(company), member, days, False)
    return out
