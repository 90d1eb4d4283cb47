"""The projection of added records over just the days they touch (docs/design.md §3, a step's way).

A step that only adds interactions or identifies — no command, nothing for the retention to
erase — reads the user's index (`fold.Index`) and then only: the rows, sessions and figures of
the days its rows' sessions can reach (`reach`: the days of the added rows, and each
neighbour day whose rows are within the session gap of theirs, transitively — a chain that
crosses midnight), the feedback or engagement list when it adds to it, and the figures of
the days its segments or a company it joins need. Every session that starts on a reached
day lies within the reached days, so each of their `d:` and `s:` fields is recomputed
whole from its rows (`fold.day_fields`, as `fold.project` does), and the header from the
index. A hypothesis test holds this equal to `fold.project` field by field
(tests/unit/test_days.py).

Anything else — a command, an erasure, a row replaced under its id (a client bug) — is
projected in full from every stored field (`fold.project`).
"""

from __future__ import annotations

from bisect import insort
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from projections import keys
from projections.fold import (
    STATUS,
    Event,
    Index,
    UserState,
    compact,
    day_fields,
    decode_field,
    encode_field,
    erase,
    feedback_item,
    header,
    merge_context,
    merge_identify,
    merge_row,
    nps_latest,
    order,
    pack_rows,
    read_rows,
    reset_at,
    rows_field,
    sessions_of,
)
from projections.origins import merged_ids, with_own
from schemas.limits import DAY_MS
from schemas.models import Identify
from schemas.timefmt import day_of


def reach(days: dict[str, list[int]], added: dict[str, list[int]], gap_ms: int) -> list[str]:
    """The days a step adding rows (their first and last time per day) must read: theirs, and
    every neighbour day a session can span to, as the days' first and last times say.

    With a gap shorter than a day (the usual), a session can only span to the calendar day
    before or after, so this looks at those alone, whatever the length of the history."""
    if gap_ms >= DAY_MS:
        return _reach_in_order(days, added, gap_ms)

    def span(d: str) -> list[int] | None:
        old, new = days.get(d), added.get(d)
        if old is None or new is None:
            return old or new
        return [min(old[0], new[0]), max(old[1], new[1])]

    out, todo = set(added), list(added)
    while todo:
        d = todo.pop()
        mine = span(d)
        assert mine is not None
        for other, earlier in ((_next_day(d, -1), True), (_next_day(d, 1), False)):
            theirs = span(other)
            if theirs is None or other in out:
                continue
            apart = mine[0] - theirs[1] if earlier else theirs[0] - mine[1]
            if apart <= gap_ms:
                out.add(other)
                todo.append(other)
    return sorted(out)


def _next_day(day: str, step: int) -> str:
    return (date.fromisoformat(day) + timedelta(days=step)).isoformat()


def _reach_in_order(
    days: dict[str, list[int]], added: dict[str, list[int]], gap_ms: int
) -> list[str]:
    """`reach` for any gap: neighbours in the order of the days that exist."""
    merged = {d: list(span) for d, span in days.items()}
    for d, (first, last) in added.items():
        old = merged.get(d)
        merged[d] = [first, last] if old is None else [min(old[0], first), max(old[1], last)]
    ordered = sorted(merged)
    where = {d: i for i, d in enumerate(ordered)}
    out, todo = set(added), list(added)
    while todo:
        i = where[todo.pop()]
        for a, b in ((i - 1, i), (i, i + 1)):
            if (
                a >= 0
                and b < len(ordered)
                and merged[ordered[b]][0] - merged[ordered[a]][1] <= gap_ms
            ):
                for d in (ordered[a], ordered[b]):
                    if d not in out:
                        out.add(d)
                        todo.append(d)
    return sorted(out)


def spans(records: list[Event]) -> dict[str, list[int]]:
    """The first and last time per day of the interactions among `records`."""
    out: dict[str, list[int]] = {}
    for r in records:
        if not isinstance(r, Identify):
            d = day_of(r.timestamp)
            span = out.get(d)
            out[d] = (
                [r.timestamp, r.timestamp]
                if span is None
                else [
                    min(span[0], r.timestamp),
                    max(span[1], r.timestamp),
                ]
            )
    return out


def joins_company(index: Index, records: list[Event]) -> bool:
    """Whether an added identify may make another company the user's current one (which then
    gets every day of the user)."""
    current = index.company
    for r in records:
        if isinstance(r, Identify) and r.company is not None:
            mine = (r.timestamp, r.event_id)
            if current is None or (
                mine >= (current[0], current[1]) and r.company.id != current[2][0]
            ):
                return True
    return False


def reads(
    index: Index,
    old_header: dict[str, Any] | None,
    records: list[Event],
    reached: list[str],
    *,
    window_start: str | None,
) -> list[str]:
    """The fields a step adding `records` reads besides the index and the header: rows,
    sessions and figures of the days it reaches (`reached`: `reach` of their spans); the
    feedback and engagement lists if it adds to them; the figures of the days from
    `window_start` on (segments read them) and, when it may join a company, of every day."""
    names = [n for d in reached for n in (rows_field(d), keys.SESSIONS_PREFIX + d)]
    figures = set(reached)
    old_days = old_header["days"] if old_header else []
    if joins_company(index, records):
        figures.update(old_days)
    elif window_start is not None:
        figures.update(d for d in old_days if d >= window_start)
    names += [keys.DAY_PREFIX + d for d in sorted(figures)]
    kinds = {r.type for r in records}
    if "feedback" in kinds:
        names.append(keys.FEEDBACK)
    if "content" in kinds:
        names.append(keys.ENGAGEMENT)
    return names


@dataclass
class Projected:
    """What adding records gives: the new index, the fields to set and to delete, the
    projection as plain values (the header and every figure read or made), and the days
    whose figures changed."""

    index: Index
    to_set: dict[str, bytes]
    to_delete: list[str]
    header: dict[str, Any] | None  # None: the user does not exist
    figures: dict[str, dict[str, Any]]  # day -> figures, of the days read or made
    changed: list[str]  # days whose `d:` changed (or went)
    engagement: list[list[Any]] | None


def project_days(
    index: Index,
    old_header: dict[str, Any] | None,
    stored: dict[str, bytes],
    records: list[Event],
    gap_ms: int,
    floor: int,
    reached: list[str] | None = None,
) -> Projected | None:
    """Add interactions and identifies (none of them erased by a delete or below `floor`) to
    a user of whose fields `stored` holds the ones `reads` names (absent ones do not exist),
    whose rows are all at or after `floor`; None when a row under an existing id differs
    (then only the full projection is right)."""
    new = index.copy()
    erase(new, floor)  # last writers the retention has passed meanwhile
    if reached is None:
        reached = reach(index.days, spans(records), gap_ms)
    rows_by_day = {d: read_rows(stored.get(rows_field(d))) for d in reached}
    added: dict[str, list[Any]] = {}
    for r in records:
        if isinstance(r, Identify):
            merge_identify(new, r)
            continue
        row = compact(r)
        day = rows_by_day[day_of(r.timestamp)]
        if r.event_id in day and day[r.event_id] == row:
            continue  # delivered twice
        if not merge_row(day, r.event_id, row):
            return None
        added[r.event_id] = row
        merge_context(new.auto, r)
    to_set: dict[str, bytes] = {}
    to_delete: list[str] = []
    rows = sorted(((eid, row) for d in reached for eid, row in rows_by_day[d].items()), key=order)
    sessions = sessions_of(rows, gap_ms)
    by_start: dict[str, list[list[tuple[str, list[Any]]]]] = {}
    for s in sessions:
        by_start.setdefault(day_of(s[0][1][0]), []).append(s)
    figures = {
        name[len(keys.DAY_PREFIX) :]: decode_field(raw)
        for name, raw in stored.items()
        if name.startswith(keys.DAY_PREFIX)
    }
    days = set(old_header["days"]) if old_header else set()
    before = after = 0
    changed = []
    for d in reached:
        day_rows = sorted(rows_by_day[d].items(), key=order)
        if day_rows:
            new.days[d] = [day_rows[0][1][0], day_rows[-1][1][0]]
            if added.keys() & rows_by_day[d].keys():
                to_set[rows_field(d)] = pack_rows(rows_by_day[d])
        old_sessions = stored.get(keys.SESSIONS_PREFIX + d)
        before += len(decode_field(old_sessions)) if old_sessions else 0
        fresh = day_fields(d, day_rows, by_start.get(d, []))
        after += len(by_start.get(d, []))
        for prefix in (keys.DAY_PREFIX, keys.SESSIONS_PREFIX):
            name = prefix + d
            if name in fresh:
                raw = encode_field(fresh[name])
                if stored.get(name) != raw:
                    to_set[name] = raw
                    if prefix == keys.DAY_PREFIX:
                        changed.append(d)
            elif name in stored:
                to_delete.append(name)
                if prefix == keys.DAY_PREFIX:
                    changed.append(d)
        if keys.DAY_PREFIX + d in fresh:
            figures[d] = fresh[keys.DAY_PREFIX + d]
            days.add(d)
        else:
            figures.pop(d, None)
            days.discard(d)
    nps = old_header["nps_latest"] if old_header else None
    kinds = {row[1] for row in added.values()}
    if "feedback" in kinds:
        feedback = decode_field(stored[keys.FEEDBACK]) if keys.FEEDBACK in stored else []
        for eid, row in added.items():
            if row[1] == "feedback":
                insort(feedback, feedback_item(eid, row), key=lambda f: (f[0], f[7]))
        to_set[keys.FEEDBACK] = encode_field(feedback)
        nps = nps_latest(feedback)
    items = decode_field(stored[keys.ENGAGEMENT]) if keys.ENGAGEMENT in stored else None
    if "content" in kinds:
        items = _engage(items or [], new, added, reset_at(index.commands))
        to_set[keys.ENGAGEMENT] = encode_field(items)
    if new.identity is not None:  # a root: its own last writers take its records too (§7)
        new.identity = with_own(new.identity, new.commands, records, floor)
    total = (old_header["total_sessions"] if old_header else 0) - before + after
    first = min(new.days.values())[0] if new.days else None
    last = max(span[1] for span in new.days.values()) if new.days else None
    state = UserState(
        {}, new.commands, new.traits, new.company, new.facts, new.auto, new.identified
    )
    h: dict[str, Any] | None = None
    if new.days or new.identified is not None:  # it exists (§4)
        h = header(state, first, last, total, nps, sorted(days))
        if merged := merged_ids(new.identity):
            h["merged_ids"] = merged
        to_set[keys.HEADER] = encode_field(h)
    elif old_header is not None:
        to_delete.append(keys.HEADER)
    to_set[keys.INDEX] = new.to_bytes()
    return Projected(new, to_set, to_delete, h, figures, changed, items)


def _engage(
    items: list[list[Any]],
    index: Index,
    added: dict[str, list[Any]],
    reset: int | None,
) -> list[list[Any]]:
    """The engagement items with the added content events (as `fold.engagement` would make
    them from every event), from the items and the keys the index keeps for each."""
    by_id = {item[0]: list(item) for item in items}
    for eid, row in sorted(added.items(), key=order):
        if row[1] != "content":
            continue
        ts, cid = row[0], row[2]
        after = reset is None or ts > reset
        item, keys_ = by_id.get(cid), index.engagement.get(cid)
        if item is None or keys_ is None:
            status = (
                (STATUS[row[5]] if row[5] != "completed" else "completed")
                if after
                else ("not_started")
            )
            steps = [row[6]] if after and row[5] == "step_completed" and row[6] is not None else []
            by_id[cid] = [cid, row[3], row[4] or None, row[5], ts, row[7], 1, status, steps]
            index.engagement[cid] = [
                eid,
                [ts, eid] if row[4] else None,
                [ts, eid] if after else None,
            ]
            continue
        latest_eid, named, last_after = keys_
        item[6] += 1
        if (ts, eid) > (item[4], latest_eid):
            item[1], item[3], item[4], item[5] = row[3], row[5], ts, row[7]
            latest_eid = eid
        if row[4] and (named is None or (ts, eid) > tuple(named)):
            item[2], named = row[4], [ts, eid]
        if after:
            if row[5] == "completed":
                item[7] = "completed"
            elif item[7] != "completed" and (last_after is None or (ts, eid) > tuple(last_after)):
                item[7] = STATUS[row[5]]
            if last_after is None or (ts, eid) > tuple(last_after):
                last_after = [ts, eid]
            if row[5] == "step_completed" and row[6] is not None and row[6] not in item[8]:
                item[8] = sorted([*item[8], row[6]])
        index.engagement[cid] = [latest_eid, named, last_after]
    out = list(by_id.values())
    out.sort(key=lambda item: (-item[4], item[0]))
    return out
