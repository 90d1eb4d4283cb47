"""Batch reference for docs/design.md §3 (semantics) and §4 (read contract).

A deliberately plain, slow and independent computation of the user and company views
from a *set* of wire records (docs/design.md §2).  Property and integration tests compare
the streaming implementation against it.  It imports nothing from the project packages — only the
standard library — and is written as sort / group / loop on purpose.

Input records are plain dicts that already passed validation.  Every public function takes
the whole record list (any order, duplicates allowed) and recomputes everything from it.

Pipeline (the same for every view):

1. retention: drop every event whose ``timestamp`` is older than ``now_ms - retention_days
   * 86_400_000`` — such a record would have gone to the DLQ and never reached the fold;
   commands count at any age (a delete keeps erasing what it erased);
2. dedupe: events by (app_id, user_id, event_id), commands by (app_id, user_id,
   command_id); among different records sharing an id, keep the one whose
   ``json.dumps(rec, sort_keys=True)`` is smallest;
3. delete: for a user with delete commands, T = max issued_at of them; drop its events with
   timestamp <= T and its non-delete commands with issued_at <= T;
4. a user exists iff a non-command record of it survives;
5. views are computed from what survives, with last-writer-wins by (timestamp, event_id);
   across users (company name / created_at / traits) ties go to the larger user_id.

Identity (§7) comes before 3: ``alias`` records and ``unmerge`` commands are links and leave
the data; a delete erases, in every id connected to its id by any alias, what is at or before
its time; then every surviving record of a merged id is rewritten to its root's user_id and
deduplicated again there.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from typing import Any

DAY_MS = 86_400_000
DEFAULT_GAP_MS = 30 * 60 * 1000
DEFAULT_RETENTION_DAYS = 400

INTERACTION_TYPES = ("track", "page", "feedback", "content")
CONTEXT_FIELDS = (
    "page_url",
    "page_title",
    "hostname",
    "country",
    "browser",
    "os",
    "device",
    "language",
)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$"
)
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")


# --------------------------------------------------------------------------- time


def to_ms(value: Any) -> int:
    """An RFC 3339 string with offset, or int epoch ms, as UTC epoch ms.

    Fractions of a millisecond are truncated (towards the past)."""
    if isinstance(value, bool):
        raise ValueError(f"not a timestamp: {value!r}")
    if isinstance(value, int):
        return value
    if not isinstance(value, str):
        raise ValueError(f"not a timestamp: {value!r}")
    m = _RFC3339.match(value)
    if m is None:
        raise ValueError(f"not an RFC 3339 timestamp: {value!r}")
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    fraction = m.group(7)
    millis = int((fraction[1:] + "000")[:3]) if fraction else 0
    local = datetime(year, month, day, hour, minute, second)
    whole_ms = (local - datetime(1970, 1, 1)) // timedelta(milliseconds=1)
    offset = m.group(8)
    offset_ms = 0
    if offset not in ("Z", "z"):
        sign = 1 if offset[0] == "+" else -1
        offset_ms = sign * (int(offset[1:3]) * 60 + int(offset[4:6])) * 60_000
    return whole_ms + millis - offset_ms


def fmt_ms(ms: int) -> str:
    """UTC epoch ms as RFC 3339 with milliseconds and ``Z``: 2026-11-28T14:30:22.123Z."""
    dt = _EPOCH + timedelta(milliseconds=ms)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def day_of(ms: int) -> str:
    """The UTC day (YYYY-MM-DD) of epoch ms."""
    return (_EPOCH + timedelta(milliseconds=ms)).strftime("%Y-%m-%d")


def in_period(day: str, frm: str | None, to: str | None) -> bool:
    """Inclusive day range; None = unbounded.  YYYY-MM-DD strings compare as dates."""
    if frm is not None and day < frm:
        return False
    return not (to is not None and day > to)


# --------------------------------------------------------------------------- page key


def page_key(url: str) -> str:
    """Host lower-cased (port kept) + path (case kept, trailing slashes removed, "/" if empty).

    Scheme, user info, query and fragment are dropped.  A URL without a scheme ("x://")
    starts with its host."""
    rest = url
    scheme = _SCHEME.match(rest)
    if scheme is not None:
        rest = rest[scheme.end() :]
    # authority = everything up to the first "/", "?" or "#"
    end = len(rest)
    for stop in "/?#":
        pos = rest.find(stop)
        if pos != -1 and pos < end:
            end = pos
    authority = rest[:end]
    after = rest[end:]
    host = authority.rsplit("@", 1)[-1].lower()
    # path = up to the first "?" or "#"
    path_end = len(after)
    for stop in "?#":
        pos = after.find(stop)
        if pos != -1 and pos < path_end:
            path_end = pos
    path = after[:path_end].rstrip("/")
    if path == "":
        path = "/"
    return host + path


# --------------------------------------------------------------------------- preparation


def record_ms(rec: dict) -> int:
    """The time of a record: issued_at for commands, timestamp otherwise."""
    if rec["type"] == "command":
        return to_ms(rec["issued_at"])
    return to_ms(rec["timestamp"])


def _canonical(rec: dict) -> str:
    return json.dumps(rec, sort_keys=True)


def surviving_records(
    records: list[dict],
    *,
    now_ms: int,
    retention_days: int = DEFAULT_RETENTION_DAYS,
) -> dict[tuple[str, str], list[dict]]:
    """Retention, dedupe and delete applied; grouped by (app_id, user_id).

    Users whose every record was dropped are absent.  A user present here may still hold
    commands only (then it does not exist, see ``user_ids``)."""
    horizon = now_ms - retention_days * DAY_MS

    # 1. retention (of events: commands and aliases count at any age)
    kept = [
        rec for rec in records if rec["type"] in ("command", "alias") or record_ms(rec) >= horizon
    ]

    # 2. dedupe; then identity (§7): links out, deletes across components, records to their
    # roots, where they are deduplicated again (as if sent with the root's user_id)
    kept = _dedupe(_to_roots(_dedupe(kept)))

    # group by user
    per_user: dict[tuple[str, str], list[dict]] = {}
    for rec in kept:
        per_user.setdefault((rec["app_id"], rec["user_id"]), []).append(rec)

    # 3. delete
    result: dict[tuple[str, str], list[dict]] = {}
    for user, recs in per_user.items():
        delete_times = [
            to_ms(r["issued_at"])
            for r in recs
            if r["type"] == "command" and r["command"] == "delete"
        ]
        if delete_times:
            deleted_until = max(delete_times)
            # delete commands stay (they only give T); everything else must be after T
            recs = [
                r
                for r in recs
                if (r["type"] == "command" and r["command"] == "delete")
                or record_ms(r) > deleted_until
            ]
        if recs:
            result[user] = recs
    return result


# --------------------------------------------------------------------------- identity (§7)


def _is_link(rec: dict) -> bool:
    return rec["type"] == "alias" or (rec["type"] == "command" and rec["command"] == "unmerge")


def _merges(links: list[dict]) -> dict[tuple[str, str], tuple[tuple, str]]:
    """(app, previous id) -> ((time, id, kind), target) of its alias in force: the latest of
    its aliases and unmerges, an unmerge winning a tie of (time, id)."""
    latest: dict[tuple[str, str], tuple[tuple, str | None]] = {}
    for rec in links:
        if rec["type"] == "alias":
            who, order, target = (
                rec["previous_id"],
                (record_ms(rec), rec["event_id"], 0),
                rec["user_id"],
            )
        else:
            who, order, target = rec["user_id"], (record_ms(rec), rec["command_id"], 1), None
        key = (rec["app_id"], who)
        if key not in latest or order > latest[key][0]:
            latest[key] = (order, target)
    return {k: (o, t) for k, (o, t) in latest.items() if t is not None}


def root_of(links: list[dict], app_id: str, user_id: str) -> str:
    """Follow the aliases in force from the id; a cycle's latest alias does not count."""
    merges = _merges(links)
    while True:
        path = [user_id]
        at = user_id
        while (app_id, at) in merges:
            at = merges[(app_id, at)][1]
            if at in path:  # a cycle: drop its latest alias and start again
                cycle = path[path.index(at) :]
                latest = max(cycle, key=lambda p: merges[(app_id, p)][0])
                del merges[(app_id, latest)]
                break
            path.append(at)
        else:
            return at


def _connected(links: list[dict], app_id: str, user_id: str) -> set[str]:
    """Every id joined to this one by aliases, in force or not (and the id itself)."""
    edges = [
        (r["previous_id"], r["user_id"])
        for r in links
        if r["type"] == "alias" and r["app_id"] == app_id
    ]
    seen = {user_id}
    grew = True
    while grew:
        grew = False
        for a, b in edges:
            if (a in seen) != (b in seen):
                seen |= {a, b}
                grew = True
    return seen


def _to_roots(records: list[dict]) -> list[dict]:
    links = [r for r in records if _is_link(r)]
    data = [r for r in records if not _is_link(r)]
    deletes: dict[tuple[str, str], int] = {}
    for r in data:
        if r["type"] == "command" and r["command"] == "delete":
            key = (r["app_id"], r["user_id"])
            deletes[key] = max(deletes.get(key, record_ms(r)), record_ms(r))
    reach: dict[tuple[str, str], int] = {}
    for (app, who), at in deletes.items():
        for other in _connected(links, app, who):
            reach[(app, other)] = max(reach.get((app, other), at), at)
    out = []
    for r in data:
        until = reach.get((r["app_id"], r["user_id"]))
        is_delete = r["type"] == "command" and r["command"] == "delete"
        if until is not None and record_ms(r) <= until and not is_delete:
            continue
        root = root_of(links, r["app_id"], r["user_id"])
        out.append(r if root == r["user_id"] else {**r, "user_id": root})
    return out


def _merged_ids(records: list[dict], app_id: str, user_id: str) -> list[str]:
    """The ids whose root is this one (every id an alias or unmerge names)."""
    links = [r for r in records if _is_link(r) and r["app_id"] == app_id]
    named = {r["previous_id"] for r in links if r["type"] == "alias"}
    named |= {r["user_id"] for r in links}
    return sorted(x for x in named if x != user_id and root_of(links, app_id, x) == user_id)


def merged_into(records: list[dict], app_id: str, user_id: str) -> str | None:
    """The root a merged id's records count for; None for an id that is its own root."""
    links = [r for r in records if _is_link(r)]
    root = root_of(links, app_id, user_id)
    return None if root == user_id else root


def _dedupe(records: list[dict]) -> list[dict]:
    """The smallest canonical JSON wins among records sharing an id."""
    by_id: dict[tuple, dict] = {}
    for rec in records:
        if rec["type"] == "command":
            key = ("command", rec["app_id"], rec["user_id"], rec["command_id"])
        elif rec["type"] == "alias":
            key = ("alias", rec["app_id"], rec["previous_id"], rec["event_id"])
        else:
            key = ("event", rec["app_id"], rec["user_id"], rec["event_id"])
        if key not in by_id or _canonical(rec) < _canonical(by_id[key]):
            by_id[key] = rec
    return list(by_id.values())


def _event_order(rec: dict) -> tuple[int, str]:
    return (to_ms(rec["timestamp"]), rec["event_id"])


def _command_order(rec: dict) -> tuple[int, str]:
    return (to_ms(rec["issued_at"]), rec["command_id"])


def _context(rec: dict) -> dict:
    return rec.get("context") or {}


def _context_page(rec: dict) -> str | None:
    url = _context(rec).get("page_url")
    return page_key(url) if url is not None else None


class _User:
    """The surviving records of one existing user, split by type and sorted oldest first
    by (timestamp, event_id) / (issued_at, command_id)."""

    def __init__(self, app_id: str, user_id: str, recs: list[dict], gap_ms: int):
        self.app_id = app_id
        self.user_id = user_id
        events = sorted((r for r in recs if r["type"] != "command"), key=_event_order)
        self.commands = sorted((r for r in recs if r["type"] == "command"), key=_command_order)
        self.identifies = [r for r in events if r["type"] == "identify"]
        self.interactions = [r for r in events if r["type"] in INTERACTION_TYPES]
        self.sessions = sessionize(self.interactions, gap_ms)


def _load_user(
    records: list[dict],
    app_id: str,
    user_id: str,
    now_ms: int,
    gap_ms: int,
    retention_days: int,
) -> _User | None:
    recs = surviving_records(records, now_ms=now_ms, retention_days=retention_days).get(
        (app_id, user_id)
    )
    if not recs or all(r["type"] == "command" for r in recs):
        return None
    return _User(app_id, user_id, recs, gap_ms)


# --------------------------------------------------------------------------- sessions


def sessionize(interactions: list[dict], gap_ms: int) -> list[list[dict]]:
    """Split interactions (sorted by (ts, event_id)) where the gap to the previous one is
    greater than gap_ms.  Returns sessions oldest first, each a list oldest first."""
    sessions: list[list[dict]] = []
    previous_ms: int | None = None
    for rec in interactions:
        ts = to_ms(rec["timestamp"])
        if previous_ms is None or ts - previous_ms > gap_ms:
            sessions.append([])
        sessions[-1].append(rec)
        previous_ms = ts
    return sessions


def _session_start(session: list[dict]) -> int:
    return to_ms(session[0]["timestamp"])


def _session_end(session: list[dict]) -> int:
    return to_ms(session[-1]["timestamp"])


def _session_duration_ms(session: list[dict]) -> int:
    return _session_end(session) - _session_start(session)


def _breakdown_item(rec: dict) -> dict:
    kind = rec["type"]
    page = _context_page(rec)
    if kind == "track":
        name = rec["name"]
    elif kind == "page":
        name = page_key(rec["url"])
        page = name
    elif kind == "feedback":
        name = rec["survey_id"]
    else:  # content
        name = rec.get("content_name") or rec["content_id"]
    return {"type": kind, "name": name, "page": page, "at": fmt_ms(to_ms(rec["timestamp"]))}


def _session_item(session: list[dict]) -> dict:
    return {
        "started_at": fmt_ms(_session_start(session)),
        "ended_at": fmt_ms(_session_end(session)),
        "duration_seconds": _session_duration_ms(session) / 1000,
        "events": len(session),
        "breakdown": [_breakdown_item(rec) for rec in session],
    }


# --------------------------------------------------------------------------- overview


def _ranked(counts: Counter, label: str, search: str | None) -> list[dict]:
    items = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    if search is None:
        items = items[:10]
    else:
        needle = search.lower()
        items = [(k, c) for k, c in items if needle in k.lower()]
    return [{label: k, "count": c} for k, c in items]


def _average_seconds(durations_ms: list[int]) -> float:
    """Mean in seconds rounded to 3 decimals (exact arithmetic, ties to even); 0.0 if empty."""
    if not durations_ms:
        return 0.0
    mean_seconds = Fraction(sum(durations_ms), len(durations_ms) * 1000)
    return float(round(mean_seconds, 3))


def _overview(users: list[_User], frm: str | None, to: str | None, search: str | None) -> dict:
    """The overview over the union of the users' figures (one user for a user profile,
    the current non-excluded members for a company).  Each user keeps its own sessions."""
    event_counts: Counter = Counter()
    page_counts: Counter = Counter()
    sessions: list[list[dict]] = []
    for user in users:
        for rec in user.interactions:
            if not in_period(day_of(to_ms(rec["timestamp"])), frm, to):
                continue
            if rec["type"] == "track":
                event_counts[rec["name"]] += 1
            elif rec["type"] == "page":
                page_counts[page_key(rec["url"])] += 1
        sessions += [s for s in user.sessions if in_period(day_of(_session_start(s)), frm, to)]
    return {
        "from": frm,
        "to": to,
        "total_events": sum(event_counts.values()),
        "sessions": len(sessions),
        "avg_session_seconds": _average_seconds([_session_duration_ms(s) for s in sessions]),
        "top_events": _ranked(event_counts, "name", search),
        "top_pages": _ranked(page_counts, "page", search),
    }


# --------------------------------------------------------------------------- user profile


def _load_users(
    records: list[dict], now_ms: int, gap_ms: int, retention_days: int
) -> dict[tuple[str, str], _User]:
    """Every existing user, keyed by (app_id, user_id)."""
    survivors = surviving_records(records, now_ms=now_ms, retention_days=retention_days)
    return {
        (app_id, user_id): _User(app_id, user_id, recs, gap_ms)
        for (app_id, user_id), recs in survivors.items()
        if any(r["type"] != "command" for r in recs)
    }


def _profile(user: _User) -> dict:
    """The header fields of a user that depend on its own records only.

    ``_first_ms`` / ``_last_ms`` / ``_signed_up_ms`` are private sort helpers (epoch ms or
    None); callers drop them."""
    # traits: LWW per key, identifies oldest first so later ones overwrite
    properties: dict[str, Any] = {}
    company: dict | None = None
    for rec in user.identifies:
        for key, value in (rec.get("traits") or {}).items():
            properties[key] = value
        if rec.get("company") is not None:
            company = rec["company"]

    created_at = properties.get("created_at")
    signed_up_ms = to_ms(created_at) if created_at is not None else None

    # auto properties: per context field, LWW over interactions carrying it non-null
    auto_properties: dict[str, Any] = {}
    for rec in user.interactions:
        ctx = _context(rec)
        for field in CONTEXT_FIELDS:
            if ctx.get(field) is not None:
                auto_properties[field] = ctx[field]

    country = properties.get("country")
    if country is None:
        country = auto_properties.get("country")

    interaction_ms = [to_ms(r["timestamp"]) for r in user.interactions]
    first_ms = min(interaction_ms) if interaction_ms else None
    last_ms = max(interaction_ms) if interaction_ms else None

    excluded = False
    content_reset_ms: int | None = None
    for cmd in user.commands:  # oldest first by (issued_at, command_id)
        if cmd["command"] == "exclude":
            excluded = True
        elif cmd["command"] == "include":
            excluded = False
        elif cmd["command"] == "reset_content":
            content_reset_ms = to_ms(cmd["issued_at"])

    nps_latest = None
    for rec in user.interactions:
        if rec["type"] == "feedback" and rec["survey_type"] == "nps":
            nps_latest = rec.get("score")

    return {
        "name": properties.get("name"),
        "email": properties.get("email"),
        "country": country,
        "company_id": company["id"] if company is not None else None,
        "signed_up_at": fmt_ms(signed_up_ms) if signed_up_ms is not None else None,
        "first_seen_at": fmt_ms(first_ms) if first_ms is not None else None,
        "last_seen_at": fmt_ms(last_ms) if last_ms is not None else None,
        "total_sessions": len(user.sessions),
        "excluded": excluded,
        "content_reset_at": fmt_ms(content_reset_ms) if content_reset_ms is not None else None,
        "properties": properties,
        "auto_properties": auto_properties,
        "nps_latest": nps_latest,
        "_first_ms": first_ms,
        "_last_ms": last_ms,
        "_signed_up_ms": signed_up_ms,
    }


# --------------------------------------------------------------------------- companies


def _company_identifies(
    users: dict[tuple[str, str], _User], app_id: str, company_id: str
) -> list[dict]:
    """Every surviving identify of the app (any user's, excluded ones too) whose company.id
    is company_id, oldest first by (timestamp, event_id, user_id).

    event_id is unique per user only, so two users' identifies may tie on (timestamp,
    event_id); user_id breaks that tie (the larger user_id wins)."""
    found = []
    for user in users.values():
        if user.app_id != app_id:
            continue
        for rec in user.identifies:
            company = rec.get("company")
            if company is not None and company["id"] == company_id:
                found.append(rec)
    found.sort(key=lambda r: (*_event_order(r), r["user_id"]))
    return found


def _company_header(identifies: list[dict]) -> tuple[Any, str | None, dict[str, Any]]:
    """(name, signed_up_at, properties) by LWW over the identifies (oldest first)."""
    name = None
    created_at = None
    properties: dict[str, Any] = {}
    for rec in identifies:
        company = rec["company"]
        if company.get("name") is not None:
            name = company["name"]
        if company.get("created_at") is not None:
            created_at = company["created_at"]
        for key, value in (company.get("traits") or {}).items():
            properties[key] = value
    signed_up_at = fmt_ms(to_ms(created_at)) if created_at is not None else None
    return name, signed_up_at, properties


def _company_name(users: dict[tuple[str, str], _User], app_id: str, company_id: str | None):
    if company_id is None:
        return None
    return _company_header(_company_identifies(users, app_id, company_id))[0]


def _members(
    users: dict[tuple[str, str], _User], app_id: str, company_id: str
) -> list[tuple[_User, dict]]:
    """(user, profile) of every current member (excluded ones too), in no set order."""
    out = []
    for user in users.values():
        if user.app_id != app_id:
            continue
        profile = _profile(user)
        if profile["company_id"] == company_id:
            out.append((user, profile))
    return out


def _newest_first(ms: int | None, user_id: str) -> tuple:
    """Sort key: newest first, nulls last, then user_id ascending."""
    return (ms is None, -(ms or 0), user_id)


# --------------------------------------------------------------------------- public views


def user_ids(
    records: list[dict],
    *,
    now_ms: int,
    gap_ms: int = DEFAULT_GAP_MS,
    retention_days: int = DEFAULT_RETENTION_DAYS,
) -> set[tuple[str, str]]:
    """(app_id, user_id) of every existing user: one with a surviving non-command record."""
    del gap_ms  # sessions play no part in existence
    survivors = surviving_records(records, now_ms=now_ms, retention_days=retention_days)
    return {user for user, recs in survivors.items() if any(r["type"] != "command" for r in recs)}


def user_view(
    records: list[dict],
    app_id: str,
    user_id: str,
    *,
    now_ms: int,
    frm: str | None = None,
    to: str | None = None,
    search: str | None = None,
    gap_ms: int = DEFAULT_GAP_MS,
    retention_days: int = DEFAULT_RETENTION_DAYS,
) -> dict | None:
    """The ``profiles user`` JSON (docs/design.md §4), or None when the user does not exist.

    ``company_name`` is the company's name (see ``company_view``) for the user's current
    company, not the name carried by the user's own identify."""
    users = _load_users(records, now_ms, gap_ms, retention_days)
    user = users.get((app_id, user_id))
    if user is None:
        return None
    p = _profile(user)
    return {
        "app_id": app_id,
        "user_id": user_id,
        "name": p["name"],
        "email": p["email"],
        "country": p["country"],
        "company_id": p["company_id"],
        "company_name": _company_name(users, app_id, p["company_id"]),
        "signed_up_at": p["signed_up_at"],
        "first_seen_at": p["first_seen_at"],
        "last_seen_at": p["last_seen_at"],
        "total_sessions": p["total_sessions"],
        "excluded": p["excluded"],
        "content_reset_at": p["content_reset_at"],
        "properties": p["properties"],
        "auto_properties": p["auto_properties"],
        "segments": [],
        "nps_latest": p["nps_latest"],
        "merged_ids": _merged_ids(records, app_id, user_id),
        "overview": _overview([user], frm, to, search),
    }


def sessions_view(
    records: list[dict],
    app_id: str,
    user_id: str,
    *,
    now_ms: int,
    frm: str | None = None,
    to: str | None = None,
    limit: int | None = None,
    gap_ms: int = DEFAULT_GAP_MS,
    retention_days: int = DEFAULT_RETENTION_DAYS,
) -> list | None:
    """The ``profiles sessions`` JSON: sessions starting in the period, newest first."""
    user = _load_user(records, app_id, user_id, now_ms, gap_ms, retention_days)
    if user is None:
        return None
    chosen = [s for s in user.sessions if in_period(day_of(_session_start(s)), frm, to)]
    chosen.sort(key=_session_start, reverse=True)
    if limit is not None:
        chosen = chosen[:limit]
    return [_session_item(s) for s in chosen]


def sentiment_view(
    records: list[dict],
    app_id: str,
    user_id: str,
    *,
    now_ms: int,
    frm: str | None = None,
    to: str | None = None,
    gap_ms: int = DEFAULT_GAP_MS,
    retention_days: int = DEFAULT_RETENTION_DAYS,
) -> list | None:
    """The ``profiles sentiment`` JSON: feedback responses in the period, newest first."""
    user = _load_user(records, app_id, user_id, now_ms, gap_ms, retention_days)
    if user is None:
        return None
    feedback = [
        r
        for r in user.interactions
        if r["type"] == "feedback" and in_period(day_of(to_ms(r["timestamp"])), frm, to)
    ]
    feedback.sort(key=_event_order, reverse=True)
    return [
        {
            "survey_id": r["survey_id"],
            "survey_type": r["survey_type"],
            "question": r.get("question"),
            "score": r.get("score"),
            "answer": r.get("answer"),
            "page": _context_page(r),
            "responded_at": fmt_ms(to_ms(r["timestamp"])),
        }
        for r in feedback
    ]


_ACTION_STATUS = {
    "seen": "seen",
    "started": "in_progress",
    "step_completed": "in_progress",
    "clicked": "in_progress",
    "dismissed": "dismissed",
}


def engagement_view(
    records: list[dict],
    app_id: str,
    user_id: str,
    *,
    now_ms: int,
    gap_ms: int = DEFAULT_GAP_MS,
    retention_days: int = DEFAULT_RETENTION_DAYS,
) -> list | None:
    """The ``profiles engagement`` JSON: one item per content_id."""
    user = _load_user(records, app_id, user_id, now_ms, gap_ms, retention_days)
    if user is None:
        return None

    reset_times = [to_ms(c["issued_at"]) for c in user.commands if c["command"] == "reset_content"]
    reset_ms = max(reset_times) if reset_times else None

    by_content: dict[str, list[dict]] = {}
    for rec in user.interactions:  # oldest first
        if rec["type"] == "content":
            by_content.setdefault(rec["content_id"], []).append(rec)

    items = []
    for content_id, events in by_content.items():
        latest = events[-1]
        content_name = None
        for rec in events:
            if rec.get("content_name"):
                content_name = rec["content_name"]

        counted = [r for r in events if reset_ms is None or to_ms(r["timestamp"]) > reset_ms]
        if not counted:
            status = "not_started"
        elif any(r["action"] == "completed" for r in counted):
            status = "completed"
        else:
            status = _ACTION_STATUS[counted[-1]["action"]]
        steps = sorted(
            {
                r["step"]
                for r in counted
                if r["action"] == "step_completed" and r.get("step") is not None
            }
        )

        items.append(
            {
                "content_id": content_id,
                "content_type": latest["content_type"],
                "content_name": content_name,
                "last_action": latest["action"],
                "last_action_at": fmt_ms(to_ms(latest["timestamp"])),
                "last_page": _context_page(latest),
                "interactions": len(events),
                "status": status,
                "steps_completed": steps,
                "_last_ms": to_ms(latest["timestamp"]),
            }
        )

    items.sort(key=lambda item: (-item["_last_ms"], item["content_id"]))
    for item in items:
        del item["_last_ms"]
    return items


# --------------------------------------------------------------------------- company views


def company_ids(
    records: list[dict],
    *,
    now_ms: int,
    gap_ms: int = DEFAULT_GAP_MS,
    retention_days: int = DEFAULT_RETENTION_DAYS,
) -> set[tuple[str, str]]:
    """(app_id, company_id) of every company named by a surviving identify (any user's)."""
    users = _load_users(records, now_ms, gap_ms, retention_days)
    found = set()
    for user in users.values():
        for rec in user.identifies:
            if rec.get("company") is not None:
                found.add((user.app_id, rec["company"]["id"]))
    return found


def company_view(
    records: list[dict],
    app_id: str,
    company_id: str,
    *,
    now_ms: int,
    frm: str | None = None,
    to: str | None = None,
    search: str | None = None,
    gap_ms: int = DEFAULT_GAP_MS,
    retention_days: int = DEFAULT_RETENTION_DAYS,
) -> dict | None:
    """The ``profiles company`` JSON (docs/design.md §4), or None when the company does not exist.

    name / signed_up_at / properties: LWW over every surviving identify naming the company
    (excluded users' too).  Everything else: over the current non-excluded members."""
    users = _load_users(records, now_ms, gap_ms, retention_days)
    identifies = _company_identifies(users, app_id, company_id)
    if not identifies:
        return None
    name, signed_up_at, properties = _company_header(identifies)

    counted = [(u, p) for u, p in _members(users, app_id, company_id) if not p["excluded"]]
    first = [p["_first_ms"] for _, p in counted if p["_first_ms"] is not None]
    last = [p["_last_ms"] for _, p in counted if p["_last_ms"] is not None]
    return {
        "app_id": app_id,
        "company_id": company_id,
        "name": name,
        "signed_up_at": signed_up_at,
        "first_seen_at": fmt_ms(min(first)) if first else None,
        "last_seen_at": fmt_ms(max(last)) if last else None,
        "total_sessions": sum(p["total_sessions"] for _, p in counted),
        "users_count": len(counted),
        "properties": properties,
        "segments": [],
        "overview": _overview([u for u, _ in counted], frm, to, search),
    }


def company_users_view(
    records: list[dict],
    app_id: str,
    company_id: str,
    *,
    now_ms: int,
    gap_ms: int = DEFAULT_GAP_MS,
    retention_days: int = DEFAULT_RETENTION_DAYS,
) -> list | None:
    """The ``profiles company-users`` JSON: every current member, excluded ones flagged,
    last seen newest first (nulls last), then user_id.  None when the company does not
    exist (a company may exist with no current member: then [])."""
    users = _load_users(records, now_ms, gap_ms, retention_days)
    if not _company_identifies(users, app_id, company_id):
        return None
    members = _members(users, app_id, company_id)
    members.sort(key=lambda up: _newest_first(up[1]["_last_ms"], up[0].user_id))
    return [
        {
            "user_id": user.user_id,
            "name": p["name"],
            "email": p["email"],
            "last_seen_at": p["last_seen_at"],
            "total_sessions": p["total_sessions"],
            "excluded": p["excluded"],
        }
        for user, p in members
    ]


_USERS_SORTS = {"last_seen": "_last_ms", "signed_up": "_signed_up_ms"}


def users_list(
    records: list[dict],
    app_id: str,
    *,
    now_ms: int,
    sort: str = "last_seen",
    gap_ms: int = DEFAULT_GAP_MS,
    retention_days: int = DEFAULT_RETENTION_DAYS,
) -> list:
    """Every existing user of the app (excluded ones flagged), sorted by ``last_seen_at``
    (sort="last_seen") or ``signed_up_at`` (sort="signed_up") newest first, nulls last,
    then user_id ascending."""
    if sort not in _USERS_SORTS:
        raise ValueError(f"unknown sort: {sort!r}")
    field = _USERS_SORTS[sort]
    users = _load_users(records, now_ms, gap_ms, retention_days)
    rows = [(user, _profile(user)) for (app, _), user in users.items() if app == app_id]
    rows.sort(key=lambda up: _newest_first(up[1][field], up[0].user_id))
    return [
        {
            "user_id": user.user_id,
            "name": p["name"],
            "email": p["email"],
            "company_id": p["company_id"],
            "company_name": _company_name(users, app_id, p["company_id"]),
            "signed_up_at": p["signed_up_at"],
            "last_seen_at": p["last_seen_at"],
            "total_sessions": p["total_sessions"],
            "excluded": p["excluded"],
        }
        for user, p in rows
    ]


_COMPANY_SORTS = ("last_seen", "users", "name", "id")
_COMPANY_ROW = (
    "company_id",
    "name",
    "users_count",
    "total_sessions",
    "signed_up_at",
    "last_seen_at",
)


def companies_list(
    records: list[dict],
    app_id: str,
    *,
    now_ms: int,
    sort: str = "id",
    gap_ms: int = DEFAULT_GAP_MS,
    retention_days: int = DEFAULT_RETENTION_DAYS,
) -> list:
    """Every existing company of the app as the companies list shows it, sorted by
    ``last_seen_at`` newest first, nulls last (sort="last_seen"), ``users_count`` most first
    ("users"), the name A to Z, case-folded, the id when it has none ("name"), or nothing
    ("id"); then company_id ascending."""
    if sort not in _COMPANY_SORTS:
        raise ValueError(f"unknown sort: {sort!r}")
    views = [
        company_view(
            records, app_id, c, now_ms=now_ms, gap_ms=gap_ms, retention_days=retention_days
        )
        for a, c in company_ids(
            records, now_ms=now_ms, gap_ms=gap_ms, retention_days=retention_days
        )
        if a == app_id
    ]
    rows = sorted((v for v in views if v is not None), key=lambda v: v["company_id"])
    if sort == "last_seen":  # a stable sort: ties keep the id order, even reversed
        rows.sort(key=lambda v: v["last_seen_at"] or "", reverse=True)
    elif sort == "users":
        rows.sort(key=lambda v: -v["users_count"])
    elif sort == "name":
        rows.sort(key=lambda v: (v["name"] or v["company_id"]).casefold())
    return [{k: v[k] for k in _COMPANY_ROW} for v in rows]


def find_companies(records: list[dict], app_id: str, q: str, *, now_ms: int) -> list:
    """The companies whose id starts with `q` (id order), then those whose name (the id when it
    has none) starts with it in any case (name order); each company once."""
    by_id = companies_list(records, app_id, now_ms=now_ms)
    by_name = companies_list(records, app_id, now_ms=now_ms, sort="name")
    ids = [c for c in by_id if c["company_id"].startswith(q)]
    named = [
        c
        for c in by_name
        if c not in ids and (c["name"] or c["company_id"]).casefold().startswith(q.casefold())
    ]
    return ids + named


# --------------------------------------------------------------------------- segments


def _day_figures(users: list[_User]) -> dict[str, dict[str, Counter]]:
    """day -> {"n": track name counts, "p": page key counts} over the users' interactions."""
    days: dict[str, dict[str, Counter]] = {}
    for user in users:
        for rec in user.interactions:
            if rec["type"] not in ("track", "page"):
                continue
            day = days.setdefault(day_of(to_ms(rec["timestamp"])), {"n": Counter(), "p": Counter()})
            if rec["type"] == "track":
                day["n"][rec["name"]] += 1
            else:
                day["p"][page_key(rec["url"])] += 1
    return days


def segment_subjects(
    records: list[dict],
    app_id: str,
    *,
    now_ms: int,
    gap_ms: int = DEFAULT_GAP_MS,
    retention_days: int = DEFAULT_RETENTION_DAYS,
) -> dict[tuple[str, str], dict]:
    """What segment rules read of every user and company of an app, as plain data:
    (scope, id) -> {header: {properties, auto_properties, first_seen_at, last_seen_at,
    signed_up_at (epoch ms), total_sessions, nps_latest, excluded}, days: {day: {n, p}},
    engagement: [[content_id, 6 unused, status]], company_properties: dict or None}."""
    users = _load_users(records, now_ms, gap_ms, retention_days)
    out: dict[tuple[str, str], dict] = {}
    companies: dict[str, dict] = {}
    for (app, user_id), user in users.items():
        if app != app_id:
            continue
        p = _profile(user)
        company_id = p["company_id"]
        if company_id is not None and company_id not in companies:
            companies[company_id] = company_view(
                records,
                app_id,
                company_id,
                now_ms=now_ms,
                gap_ms=gap_ms,
                retention_days=retention_days,
            )
        engagement = (
            engagement_view(
                records,
                app_id,
                user_id,
                now_ms=now_ms,
                gap_ms=gap_ms,
                retention_days=retention_days,
            )
            or []
        )
        out[("user", user_id)] = {
            "header": {
                "properties": p["properties"],
                "auto_properties": p["auto_properties"],
                "first_seen_at": p["_first_ms"],
                "last_seen_at": p["_last_ms"],
                "signed_up_at": p["_signed_up_ms"],
                "total_sessions": p["total_sessions"],
                "nps_latest": p["nps_latest"],
                "excluded": p["excluded"],
            },
            "days": _day_figures([user]),
            "engagement": [[e["content_id"], *[None] * 6, e["status"]] for e in engagement],
            "company_properties": (
                companies[company_id]["properties"] if company_id is not None else None
            ),
        }
    named = {
        rec["company"]["id"]
        for user in users.values()
        if user.app_id == app_id
        for rec in user.identifies
        if rec.get("company") is not None
    }
    for company_id in named:
        view = company_view(
            records, app_id, company_id, now_ms=now_ms, gap_ms=gap_ms, retention_days=retention_days
        )
        if view is None:
            continue
        counted = [u for u, p in _members(users, app_id, company_id) if not p["excluded"]]
        out[("company", company_id)] = {
            "header": {
                "properties": view["properties"],
                "first_seen_at": to_ms(view["first_seen_at"]) if view["first_seen_at"] else None,
                "last_seen_at": to_ms(view["last_seen_at"]) if view["last_seen_at"] else None,
                "signed_up_at": to_ms(view["signed_up_at"]) if view["signed_up_at"] else None,
                "total_sessions": view["total_sessions"],
            },
            "days": _day_figures(counted),
            "engagement": [],
            "company_properties": None,
        }
    return out


# --------------------------------------------------------------------------- segment rules
#
# A naive evaluator of one definition (its JSON dict) over the plain data of segment_subjects.


def _sort(v: Any) -> Any:
    if isinstance(v, bool):
        return bool
    if isinstance(v, int | float):
        return float
    if isinstance(v, str):
        return str
    return None


def _ref_compare(op: str, actual: Any, expected: Any) -> bool:
    if op == "exists":
        return actual is not None
    if actual is None:
        return op == "neq"
    same = _sort(actual) is not None and _sort(actual) == _sort(expected)
    if op == "eq":
        return same and actual == expected
    if op == "neq":
        return not (same and actual == expected)
    if op == "in":
        return any(_sort(item) == _sort(actual) and item == actual for item in expected)
    if op == "contains":
        return isinstance(actual, str) and isinstance(expected, str) and expected in actual
    if op == "starts_with":
        return (
            isinstance(actual, str)
            and isinstance(expected, str)
            and actual[: len(expected)] == expected
        )
    if not same or _sort(actual) is bool:
        return False
    if op == "gt":
        return actual > expected
    if op == "gte":
        return actual >= expected
    if op == "lt":
        return actual < expected
    return actual <= expected


def _ref_condition(c: dict[str, Any], raw: dict[str, Any], now: int, scope: str) -> bool:
    header, days = raw["header"], raw["days"]
    user = scope == "user"
    kind = c["kind"]
    if kind == "property":
        if c["source"] == "properties":
            found = header.get("properties", {}).get(c["key"])
        elif not user:
            return False
        elif c["source"] == "auto_properties":
            found = header.get("auto_properties", {}).get(c["key"])
        else:
            company = raw["company_properties"]
            found = None if company is None else company.get(c["key"])
        return _ref_compare(c["operator"], found, c["value"])
    if kind == "time":
        at = header.get(c["field"])
        if at is None:
            return False
        if c["within_days"] is not None:
            return at >= now - c["within_days"] * DAY_MS
        return at < now - c["before_days"] * DAY_MS
    if kind == "number":
        if c["field"] == "nps_latest" and not user:
            return False
        return _ref_compare(c["operator"], header.get(c["field"]), c["value"])
    if kind == "event":
        count = 0
        for back in range(c["days"]):
            figures = days.get(day_of(now - back * DAY_MS))
            if figures is not None:
                count += figures["n"].get(c["name"], 0)
        if c["at_least"] is not None and count < c["at_least"]:
            return False
        return not (c["at_most"] is not None and count > c["at_most"])
    if kind == "page":
        for back in range(c["days"]):
            figures = days.get(day_of(now - back * DAY_MS))
            if figures is not None and figures["p"].get(c["page"], 0) > 0:
                return True
        return False
    if not user:
        return False
    if kind == "content":
        status = "not_started"
        for item in raw["engagement"]:
            if item[0] == c["content_id"]:
                status = item[7]
        return status == c["status"]
    return header.get("excluded", False) == c["value"]


def _ref_group(g: dict[str, Any], raw: dict[str, Any], now: int, scope: str) -> bool:
    results = []
    for item in g["conditions"]:
        if "op" in item:
            results.append(_ref_group(item, raw, now, scope))
        else:
            results.append(_ref_condition(item, raw, now, scope))
    if g["op"] == "and":
        return False not in results
    return True in results


def segment_member(segment: dict[str, Any], raw: dict[str, Any], now: int) -> bool:
    """Whether the subject (plain data) matches the definition at `now` (epoch ms)."""
    return _ref_group(segment["rule"], raw, now, segment["scope"])


def fit_scope(definition: dict[str, Any]) -> dict[str, Any]:
    """A generated definition made valid: a company segment may not use user-only conditions
    (other property sources, nps_latest, content, excluded), so such a one becomes a user one."""

    def user_only(item: dict[str, Any]) -> bool:
        if "op" in item:
            return any(user_only(c) for c in item["conditions"])
        kind = item["kind"]
        return (
            (kind == "property" and item["source"] != "properties")
            or (kind == "number" and item["field"] == "nps_latest")
            or kind in ("content", "excluded")
        )

    if definition["scope"] == "company" and user_only(definition["rule"]):
        return {**definition, "scope": "user"}
    return definition
