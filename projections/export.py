"""Exports: one user's whole profile (csv|json), every user of an app (csv|jsonl), resumable."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from typing import IO, Any

from projections import keys
from projections.reader import NotFound, Reader

USER_COLUMNS = [
    "user_id",
    "name",
    "email",
    "country",
    "company_id",
    "company_name",
    "signed_up_at",
    "first_seen_at",
    "last_seen_at",
    "total_sessions",
    "excluded",
    "content_reset_at",
    "nps_latest",
    "segments",
    "properties",
    "auto_properties",
]


def user_document(reader: Reader, app_id: str, user_id: str) -> dict[str, Any]:
    """Everything of one user: profile (all-time overview), sessions, sentiment, engagement."""
    return {
        "profile": reader.user(app_id, user_id),
        "sessions": reader.sessions(app_id, user_id),
        "sentiment": reader.sentiment(app_id, user_id),
        "engagement": reader.engagement(app_id, user_id),
    }


def write_user(doc: dict[str, Any], fmt: str, out: IO[str]) -> None:
    if fmt == "json":
        json.dump(doc, out, ensure_ascii=False, indent=2)
        out.write("\n")
        return
    # csv: one row per fact, `section,item,field,value`; nested values as JSON
    writer = csv.writer(out)
    writer.writerow(["section", "item", "field", "value"])
    for key, value in doc["profile"].items():
        if key == "overview":
            for okey, ovalue in value.items():
                writer.writerow(["overview", "", okey, _cell(ovalue)])
        else:
            writer.writerow(["profile", "", key, _cell(value)])
    for section in ("sessions", "sentiment", "engagement"):
        for i, item in enumerate(doc[section]):
            for key, value in item.items():
                writer.writerow([section, i, key, _cell(value)])


# A cell a spreadsheet would run as a formula starts with one of these (OWASP: CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> str:
    """A CSV cell: text as is, other values as JSON, nothing for None — and any of them that
    starts like a formula behind a `'`, which spreadsheets show and never run. (The JSON
    export carries every value unchanged.)"""
    if value is None:
        return ""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def iter_users(
    reader: Reader, app_id: str, cursor: str | None, page: int = 500, segment: str | None = None
) -> Iterator[tuple[dict[str, Any], str | None]]:
    """Every user of the app (or of one of its segments) in a stable order (by id), with the
    cursor that resumes after it."""
    while True:
        if segment is None:
            rows, next_cursor = reader.users(app_id, sort="id", limit=page, cursor=cursor)
            user_ids = [row["user_id"] for row in rows]
        else:
            user_ids, next_cursor = reader.segment_members(
                app_id, segment, limit=page, cursor=cursor
            )
        for user_id in user_ids:
            try:
                profile = reader.user(app_id, user_id)
            except NotFound:  # deleted between the page and now
                continue
            yield profile, keys.id_member(user_id)
        if next_cursor is None:
            return
        cursor = next_cursor


def user_row(profile: dict[str, Any]) -> list[str]:
    return [_cell(profile[c]) for c in USER_COLUMNS]
