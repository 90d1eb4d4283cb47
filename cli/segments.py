"""Segments: add, list, show, remove, and list members."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import click

from cli.common import (
    definition,
    definitions,
    emit,
    fail,
    reader,
    settings,
)
from streams.settings import Settings


@click.group()
def segments() -> None:
    """Rule-based user and company segments (definitions live in <prefix>segments)."""


def _await_applied(cfg: Settings, segment_id: str, offset: int, timeout: float) -> None:
    from streams.definitions import wait_applied

    r = reader(cfg)
    show = sys.stderr.isatty()

    def report(done: int, total: int | None) -> None:
        if show:
            click.echo(
                f"\r  {done}/{total if total is not None else '?'} profiles evaluated",
                err=True,
                nl=False,
            )

    if not wait_applied(r._r, lambda: r.namespace, segment_id, offset, timeout, report):
        fail(f"no worker applied segment {segment_id!r} within {timeout:g} s (is one running?)")
    if show:
        click.echo("", err=True)


@segments.command("add")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--wait/--no-wait", default=True, show_default=True, help="until every profile is evaluated"
)
@click.option("--timeout", default=600.0, show_default=True, help="seconds")
def segments_add(file: Path, wait: bool, timeout: float) -> None:
    """Add or change a segment from a JSON or YAML definition."""
    from streams.definitions import publish, read_file

    try:
        segment = read_file(file)
    except ValueError as exc:
        fail(str(exc))
    cfg = settings()
    _r, found = definitions(cfg)
    other = found.get(segment.id, {}).get("definition", {}).get("app_id", segment.app_id)
    if other != segment.app_id:
        fail(f"segment {segment.id!r} belongs to app {other!r}; remove it first or pick another id")
    offset = asyncio.run(publish(cfg, segment.id, segment))
    if wait:
        _await_applied(cfg, segment.id, offset, timeout)
        summary = definition(cfg, segment.id)[1]
        click.echo(
            f"segment {segment.id}: {summary['evaluated']} profiles evaluated, "
            f"{summary['members']} members"
        )
    else:
        click.echo(f"segment {segment.id} published at offset {offset}")


@segments.command("list")
@click.option("--app", "app_id", help="only this app's segments")
@click.option("--json", "as_json", is_flag=True)
def segments_list(app_id: str | None, as_json: bool) -> None:
    """Every segment with its member count."""
    rows = [
        {k: v for k, v in summary.items() if k != "definition"}
        for summary in reader(settings()).segments(app_id).values()
    ]

    def table(rows: list[dict[str, Any]]) -> None:
        for row in rows:
            click.echo(
                f"{row['id']}\t{row['app_id']}\t{row['scope']}\t{row['members']}\t{row['state']}\t{row['name']}"
            )

    emit(rows, as_json, table)


@segments.command("show")
@click.argument("segment_id")
@click.option("--json", "as_json", is_flag=True)
def segments_show(segment_id: str, as_json: bool) -> None:
    """One segment: its definition, member count and state."""
    summary = definition(settings(), segment_id)[1]

    def table(s: dict[str, Any]) -> None:
        click.echo(f"{s['id']} ({s['scope']} segment of {s['app_id']}): {s['name']}")
        click.echo(f"members: {s['members']}, {s['state']}")
        click.echo(json.dumps(s["definition"]["rule"], ensure_ascii=False, indent=2))

    emit(summary, as_json, table)


@segments.command("remove")
@click.argument("segment_id")
@click.option("--wait/--no-wait", default=True, show_default=True)
@click.option("--timeout", default=600.0, show_default=True, help="seconds")
def segments_remove(segment_id: str, wait: bool, timeout: float) -> None:
    """Remove a segment; its members lose it."""
    from streams.definitions import publish

    cfg = settings()
    definition(cfg, segment_id)
    offset = asyncio.run(publish(cfg, segment_id, None))
    if wait:
        _await_applied(cfg, segment_id, offset, timeout)
    click.echo(f"segment {segment_id} removed")


@segments.command("members")
@click.argument("segment_id")
@click.option("--json", "as_json", is_flag=True)
def segments_members(segment_id: str, as_json: bool) -> None:
    """Every member id of a segment, in id order."""
    r, entry = definition(settings(), segment_id)
    d = entry["definition"]
    ids: list[str] = []
    cursor = None
    while True:
        page, cursor = r.segment_members(
            d["app_id"], segment_id, scope=d["scope"], limit=1000, cursor=cursor
        )
        ids += page
        if cursor is None:
            break
    emit(ids, as_json, lambda rows: click.echo("\n".join(rows)) if rows else None)
