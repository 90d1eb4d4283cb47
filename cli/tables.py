"""Readable text renderings of the read views, for a person at a terminal."""

from __future__ import annotations

import json
from typing import Any

import click


def human(value: Any) -> str:
    """A value as people write it: true/false, — for nothing, lists and objects as JSON."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _kv(rows: list[tuple[str, Any]]) -> None:
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        click.echo(f"  {key:<{width}}  {human(value)}")


def user_table(u: dict[str, Any]) -> None:
    flag = "  [excluded]" if u["excluded"] else ""
    click.echo(f"{u['name'] or u['user_id']}  ({u['app_id']} / {u['user_id']}){flag}")
    _kv(
        [
            ("email", u["email"]),
            ("country", u["country"]),
            ("company", u["company_name"] or u["company_id"]),
            (
                "signed up",
                u["signed_up_at"]
                or (f"first seen {u['first_seen_at']}" if u["first_seen_at"] else None),
            ),
            ("last seen", u["last_seen_at"]),
            ("sessions", u["total_sessions"]),
            ("nps", u["nps_latest"]),
            ("segments", ", ".join(u["segments"]) or None),
        ]
    )
    _overview(u["overview"])
    if u["properties"]:
        click.echo("properties:")
        _kv(sorted(u["properties"].items()))


def period_words(frm: str | None, to: str | None) -> str:
    """The period a view covers, as the page says it: all time, or its bounds."""
    if frm is None and to is None:
        return "all time"
    return f"{frm or 'the first day'} to {to or 'today'}"


def _overview(o: dict[str, Any]) -> None:
    click.echo(
        f"overview, {period_words(o['from'], o['to'])}: {o['total_events']} track events, "
        f"{o['sessions']} sessions, avg {o['avg_session_seconds']:.1f} s"
    )
    for title, items, label in (
        ("top events", o["top_events"], "name"),
        ("top pages", o["top_pages"], "page"),
    ):
        click.echo(f"  {title}:")
        for item in items:
            click.echo(f"    {item['count']:>6}  {item[label]}")


def sessions_table(rows: list[dict[str, Any]]) -> None:
    for s in rows:
        click.echo(
            f"{s['started_at']}  {s['duration_seconds']:>8.1f} s  "
            f"{s['events']} interactions (track, page, feedback, content)"
        )
        for item in s["breakdown"]:
            click.echo(f"    {item['at'][11:23]}  {item['type']:<8}  {item['name']}")
    if not rows:
        click.echo("no sessions in this period")


def sentiment_table(rows: list[dict[str, Any]]) -> None:
    for f in rows:
        score = "" if f["score"] is None else f"score {f['score']}"
        click.echo(
            f"{f['responded_at']}  {f['survey_type']:<6}  {f['survey_id']}  {score}  "
            f"{f['answer'] or ''}".rstrip()
        )
    if not rows:
        click.echo("no responses in this period")


def engagement_table(rows: list[dict[str, Any]]) -> None:
    for e in rows:
        steps = f" steps {e['steps_completed']}" if e["steps_completed"] else ""
        click.echo(
            f"{e['content_type']:<9}  {e['content_name'] or e['content_id']:<28}  "
            f"{e['status']:<11}  last {e['last_action']} at {e['last_action_at']}{steps}"
        )
    if not rows:
        click.echo("no content interactions")


def company_table(c: dict[str, Any]) -> None:
    click.echo(f"{c['name'] or c['company_id']}  ({c['app_id']} / {c['company_id']})")
    _kv(
        [
            ("signed up", c["signed_up_at"]),
            ("first seen", c["first_seen_at"]),
            ("last seen", c["last_seen_at"]),
            ("users", c["users_count"]),
            ("sessions", c["total_sessions"]),
            ("segments", ", ".join(c["segments"]) or None),
        ]
    )
    _overview(c["overview"])
    if c["properties"]:
        click.echo("properties:")
        _kv(sorted(c["properties"].items()))


def users_table(rows: list[dict[str, Any]]) -> None:
    for u in rows:
        flag = "  [excluded]" if u["excluded"] else ""
        click.echo(
            f"{u['last_seen_at'] or '(never seen)':<24}  {u['total_sessions']:>5} sessions  "
            f"{u['user_id']}  {u['name'] or ''}  {u['email'] or ''}{flag}".rstrip()
        )
    if not rows:
        click.echo("no users")
