"""Pure assembly of the read shapes of docs/design.md §4 from stored projection fields."""

from __future__ import annotations

from collections import Counter
from datetime import date, timedelta
from typing import Any

from schemas.timefmt import format_ms

TOP = 10
MAX_DAYS = 1100  # the longest period `daily` lists (retention is at most ~400 days by default)


def ts(ms: int | None) -> str | None:
    return None if ms is None else format_ms(ms)


def days_in(days: list[str], frm: str | None, to: str | None) -> list[str]:
    return [d for d in days if (frm is None or d >= frm) and (to is None or d <= to)]


def _top(counts: Counter[str], label: str, search: str | None) -> list[dict[str, Any]]:
    items = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    if search is None:
        items = items[:TOP]
    else:
        needle = search.lower()
        items = [kv for kv in items if needle in kv[0].lower()]
    return [{label: name, "count": count} for name, count in items]


def overview(
    figures: list[dict[str, Any]], frm: str | None, to: str | None, search: str | None
) -> dict[str, Any]:
    """Sum per-day figures (already limited to the period) into the overview block."""
    events = sessions = session_ms = 0
    names: Counter[str] = Counter()
    pages: Counter[str] = Counter()
    for f in figures:
        events += f["e"]
        sessions += f["s"]
        session_ms += f["ms"]
        names.update(f["n"])
        pages.update(f["p"])
    return {
        "from": frm,
        "to": to,
        "total_events": events,
        "sessions": sessions,
        "avg_session_seconds": round(session_ms / sessions) / 1000 if sessions else 0.0,
        "top_events": _top(names, "name", search),
        "top_pages": _top(pages, "page", search),
    }


def user(
    app_id: str, user_id: str, header: dict[str, Any], overview_block: dict[str, Any]
) -> dict[str, Any]:
    h = header
    return {
        "app_id": app_id,
        "user_id": user_id,
        "name": h["name"],
        "email": h["email"],
        "country": h["country"],
        "company_id": h["company_id"],
        "company_name": h["company_name"],
        "signed_up_at": ts(h["signed_up_at"]),
        "first_seen_at": ts(h["first_seen_at"]),
        "last_seen_at": ts(h["last_seen_at"]),
        "total_sessions": h["total_sessions"],
        "excluded": h["excluded"],
        "content_reset_at": ts(h["content_reset_at"]),
        "properties": h["properties"],
        "auto_properties": h["auto_properties"],
        "segments": h.get("segments", []),
        "nps_latest": h["nps_latest"],
        "merged_ids": h.get("merged_ids", []),
        "overview": overview_block,
    }


def sessions(day_lists: list[list[list[Any]]], limit: int | None) -> list[dict[str, Any]]:
    flat = [s for day in day_lists for s in day]
    flat.sort(key=lambda s: s[0], reverse=True)
    if limit is not None:
        flat = flat[:limit]
    return [
        {
            "started_at": ts(start),
            "ended_at": ts(end),
            "duration_seconds": (end - start) / 1000,
            "events": len(items),
            "breakdown": [
                {"type": kind, "name": name, "page": page, "at": ts(at)}
                for at, kind, name, page in items
            ],
        }
        for start, end, items in flat
    ]


def sentiment(rows: list[list[Any]], frm: str | None, to: str | None) -> list[dict[str, Any]]:
    out = []
    for at, survey_id, survey_type, question, score, answer, page, *_id in reversed(rows):
        day = format_ms(at)[:10]
        if (frm is None or day >= frm) and (to is None or day <= to):
            out.append(
                {
                    "survey_id": survey_id,
                    "survey_type": survey_type,
                    "question": question,
                    "score": score,
                    "answer": answer,
                    "page": page,
                    "responded_at": ts(at),
                }
            )
    return out


def engagement(items: list[list[Any]]) -> list[dict[str, Any]]:
    return [
        {
            "content_id": cid,
            "content_type": ctype,
            "content_name": name,
            "last_action": action,
            "last_action_at": ts(at),
            "last_page": page,
            "interactions": count,
            "status": status,
            "steps_completed": steps,
        }
        for cid, ctype, name, action, at, page, count, status, steps in items
    ]


def company(
    app_id: str, company_id: str, header: dict[str, Any], overview_block: dict[str, Any]
) -> dict[str, Any]:
    h = header
    return {
        "app_id": app_id,
        "company_id": company_id,
        "name": h["name"],
        "signed_up_at": ts(h["signed_up_at"]),
        "first_seen_at": ts(h["first_seen_at"]),
        "last_seen_at": ts(h["last_seen_at"]),
        "total_sessions": h["total_sessions"],
        "users_count": h["users_count"],
        "properties": h["properties"],
        "segments": h.get("segments", []),
        "overview": overview_block,
    }


def company_users(rows: list[list[Any]]) -> list[dict[str, Any]]:
    return [
        {
            "user_id": user_id,
            "name": name,
            "email": email,
            "last_seen_at": ts(last_seen),
            "total_sessions": sessions,
            "excluded": excluded,
        }
        for user_id, name, email, last_seen, sessions, excluded in rows
    ]


def users_row(user_id: str, h: dict[str, Any]) -> dict[str, Any]:
    """A row of the app's users list."""
    return {
        "user_id": user_id,
        "name": h["name"],
        "email": h["email"],
        "company_id": h["company_id"],
        "company_name": h["company_name"],
        "signed_up_at": ts(h["signed_up_at"]),
        "last_seen_at": ts(h["last_seen_at"]),
        "total_sessions": h["total_sessions"],
        "excluded": h["excluded"],
    }


def daily(
    by_day: dict[str, dict[str, Any]], first: str | None, last: str | None
) -> list[dict[str, Any]]:
    """Events and sessions on every day from `first` to `last`, zeros included."""
    if first is None or last is None or first > last:
        return []
    start, end = date.fromisoformat(first), date.fromisoformat(last)
    if (end - start).days >= MAX_DAYS:
        raise ValueError(f"a period of at most {MAX_DAYS} days, please")
    out = []
    for n in range((end - start).days + 1):
        day = (start + timedelta(days=n)).isoformat()
        f = by_day.get(day)
        out.append({"day": day, "events": f["e"] if f else 0, "sessions": f["s"] if f else 0})
    return out


def companies_row(company_id: str, h: dict[str, Any]) -> dict[str, Any]:
    """A row of the app's companies list."""
    return {
        "company_id": company_id,
        "name": h["name"],
        "users_count": h["users_count"],
        "total_sessions": h["total_sessions"],
        "signed_up_at": ts(h["signed_up_at"]),
        "last_seen_at": ts(h["last_seen_at"]),
    }
