"""The `profiles` command line: worker, publisher, status, generator and the read commands."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import click
import redis
from aiokafka.errors import KafkaConnectionError, KafkaError
from pydantic import ValidationError

from projections.reader import NotFound, Reader
from schemas.timefmt import parse_day
from streams.kafka import LOGIN_REFUSALS, BootstrapFailures, KafkaSecurityError
from streams.settings import Settings

EXIT_NOT_FOUND = 3
# Why aiokafka could not reach a bootstrap server, said in one line by run().
kafka_bootstrap = BootstrapFailures()


def fail(message: str, code: int = 1) -> NoReturn:
    click.echo(f"profiles: {message}", err=True)
    sys.exit(code)


def settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        if not first["loc"]:  # a rule across settings, whose message names them
            fail(f"bad settings: {first['msg'].removeprefix('Value error, ')}", 2)
        fail(f"bad setting PROFILES_{str(first['loc'][0]).upper()}: {first['msg']}", 2)


def reader(cfg: Settings) -> Reader:
    from streams.redis_clients import sync_client

    return Reader(sync_client(cfg), cfg.namespace)


def day_option(name: str) -> Callable[[Any], Any]:
    def check(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return parse_day(value)
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from None

    return click.option(
        name,
        "frm" if name == "--from" else "to",
        callback=check,
        help="inclusive UTC day, YYYY-MM-DD",
    )


def emit(value: Any, as_json: bool, table: Callable[[Any], None]) -> None:
    if as_json:
        click.echo(json.dumps(value, ensure_ascii=False, indent=2))
    else:
        table(value)


@click.group()
def main() -> None:
    """Live user and company profiles from product events (Kafka -> Faust -> Redis)."""


# ---- pipeline --------------------------------------------------------------------------------


@main.command()
@click.option("--loglevel", default="warning", show_default=True)
def worker(loglevel: str) -> None:
    """Run the stream processor (one per core; more join the consumer group)."""
    import faust

    from projections.namespaces import OtherFormat, ProjectionsLost
    from streams.app import build_app
    from streams.faust_light import use_uvloop
    from streams.kafka import ensure_topics
    from streams.startup import claim_projections

    cfg = settings()
    use_uvloop()  # every loop from here on, Faust's consumer thread's too
    for topic in asyncio.run(ensure_topics(cfg)):  # a refused login stops here, in one line
        click.echo(f"profiles: {topic.warning()}", err=True)  # a topic that keeps less
    # From here on Faust's own connection failures stay in the worker's log.
    logging.getLogger("aiokafka").removeFilter(kafka_bootstrap)
    try:
        asyncio.run(claim_projections(cfg))
    except (ProjectionsLost, OtherFormat) as exc:
        fail(str(exc), exc.exit_code)
    app = build_app(cfg)
    faust.Worker(app, loglevel=loglevel, quiet=True).execute_from_commandline()


@main.command()
@click.argument("file", type=click.File("r", encoding="utf-8"))
@click.option("--json", "as_json", is_flag=True, help="send JSON values instead of msgpack")
def publish(file: Any, as_json: bool) -> None:
    """Validate FILE.jsonl (one record a line) and publish the valid records."""
    from streams.publish import check_lines, send_records

    cfg = settings()
    good, report = check_lines(file, cfg)
    for number, reason in report.rejected[:50]:
        click.echo(f"line {number}: rejected: {reason}", err=True)
    if len(report.rejected) > 50:
        click.echo(f"... and {len(report.rejected) - 50} more rejected lines", err=True)
    asyncio.run(send_records(good, cfg, report, as_json=as_json))
    counts = ", ".join(f"{k} {v}" for k, v in sorted(report.sent.items()))
    click.echo(
        f"published {sum(report.sent.values())} records ({counts or 'none'}); "
        f"rejected {len(report.rejected)}"
    )
    if report.rejected:
        sys.exit(1)


@main.command()
@click.option("--json", "as_json", is_flag=True)
def status(as_json: bool) -> None:
    """Consumer lag per group/topic/partition, DLQ count and processed counts."""
    from streams.status import pipeline_status

    result = asyncio.run(pipeline_status(settings()))

    def table(s: dict[str, Any]) -> None:
        for group in s["groups"]:
            click.echo(
                f"group {group['group']}: lag {group['lag']}, processed {group['processed']}"
            )
            for row in group["partitions"]:
                if row["end"]:
                    click.echo(
                        f"  {row['topic']}[{row['partition']}] "
                        f"committed {row['committed']} end {row['end']} lag {row['lag']}"
                    )
        click.echo(f"dlq: {s['dlq']} records")
        for topic in s["retention"]:
            click.echo(topic["warning"])

    emit(result, as_json, table)


@main.command()
@click.option(
    "--apply-retention",
    is_flag=True,
    help="make the topics that keep less than the views need keep enough",
)
@click.option("--json", "as_json", is_flag=True)
def topics(apply_retention: bool, as_json: bool) -> None:
    """Each pipeline topic: partitions, retention, and the retention a replay needs of it."""
    from streams.kafka import apply_retention as apply
    from streams.kafka import duration, topic_retention

    cfg = settings()
    if apply_retention:
        rows, changes = asyncio.run(apply(cfg))
    else:
        rows, changes = asyncio.run(topic_retention(cfg)), []
    result: dict[str, Any] = {"topics": [r.as_json() for r in rows]}
    if apply_retention:
        result["changed"] = [c.as_json() for c in changes]

    def ms(value: int | None) -> str:
        return "-" if value is None else duration(value)

    def table(_: dict[str, Any]) -> None:
        for change in changes:
            click.echo(change.line())
        if apply_retention and not changes:
            click.echo("nothing to change: every topic keeps what the views need")
        click.echo(f"{'topic':<40} {'partitions':>10}  {'retention':>20}  {'needs':>9}")
        for r in rows:
            size = "" if r.retention_bytes is None or r.retention_bytes < 0 else " + bytes"
            kept = f"{ms(r.retention_ms)}{size}" if r.exists else "(missing)"
            note = "  KEEPS LESS" if r.keeps_less else ""
            policy = " compact" if r.cleanup_policy and "compact" in r.cleanup_policy else ""
            click.echo(
                f"{r.topic:<40} {r.partitions or '-':>10}  {kept + policy:>20}"
                f"  {ms(r.required_ms):>9}{note}"
            )
        for r in rows:
            if r.keeps_less:
                click.echo(r.warning())

    emit(result, as_json, table)


@main.command()
@click.option("--timeout", default=300.0, show_default=True, help="seconds")
def wait(timeout: float) -> None:
    """Wait until every consumer group has lag 0 (exit 1 on timeout)."""
    from streams.status import pipeline_status

    cfg = settings()
    deadline = time.monotonic() + timeout
    while True:
        lag = asyncio.run(pipeline_status(cfg))["lag"]
        if lag == 0:
            click.echo("idle: lag 0")
            return
        if time.monotonic() > deadline:
            fail(f"still {lag} records behind after {timeout:g} s")
        time.sleep(0.5)


@main.command()
@click.option("--users", default=200, show_default=True)
@click.option("--days", default=30, show_default=True)
@click.option("--seed", default=1, show_default=True)
@click.option("--commands", is_flag=True, help="include operator commands")
@click.option("--duplicates", default=0.0, show_default=True, help="fraction of records repeated")
@click.option("--shuffle", is_flag=True, help="out of order")
@click.option("--out", type=click.Path(dir_okay=False, writable=True), default="-")
def generate(
    users: int, days: int, seed: int, commands: bool, duplicates: float, shuffle: bool, out: str
) -> None:
    """Write a realistic demo data set as JSON lines (event times end now)."""
    from streams.generate import generate as make
    from streams.generate import write_jsonl

    records = make(
        users=users,
        days=days,
        seed=seed,
        commands=commands,
        duplicates=duplicates,
        shuffle=shuffle,
        end_ms=int(time.time() * 1000),
    )
    if out == "-":
        write_jsonl(records, sys.stdout)
    else:
        write_jsonl(records, out)
        click.echo(f"wrote {len(records)} records to {out}", err=True)


@main.group()
def schemas() -> None:
    """Wire schemas for SDK authors."""


@schemas.command("export")
@click.argument("directory", type=click.Path(file_okay=False))
def schemas_export(directory: str) -> None:
    """Write a JSON Schema file for every record type into DIRECTORY."""
    from schemas.export import export_json_schemas

    paths = export_json_schemas(Path(directory))
    click.echo(f"wrote {len(paths)} schema files to {directory}")


# ---- reads -----------------------------------------------------------------------------------


def read(call: Callable[[Reader], Any]) -> Any:
    try:
        return call(reader(settings()))
    except NotFound as exc:
        fail(str(exc), EXIT_NOT_FOUND)


@main.command()
@click.argument("app_id")
@click.argument("user_id")
@day_option("--from")
@day_option("--to")
@click.option("--search", help="case-insensitive substring of event names and pages")
@click.option("--json", "as_json", is_flag=True)
def user(
    app_id: str, user_id: str, frm: str | None, to: str | None, search: str | None, as_json: bool
) -> None:
    """A user's profile: header, properties and the overview of a period."""
    from streams.tables import user_table

    emit(
        read(lambda r: r.user(app_id, user_id, frm=frm, to=to, search=search)), as_json, user_table
    )


@main.command()
@click.argument("app_id")
@click.argument("user_id")
@day_option("--from")
@day_option("--to")
@click.option("--limit", type=click.IntRange(min=1))
@click.option("--json", "as_json", is_flag=True)
def sessions(
    app_id: str, user_id: str, frm: str | None, to: str | None, limit: int | None, as_json: bool
) -> None:
    """A user's sessions with their event breakdown, newest first."""
    from streams.tables import sessions_table

    emit(
        read(lambda r: r.sessions(app_id, user_id, frm=frm, to=to, limit=limit)),
        as_json,
        sessions_table,
    )


@main.command()
@click.argument("app_id")
@click.argument("user_id")
@day_option("--from")
@day_option("--to")
@click.option("--json", "as_json", is_flag=True)
def sentiment(app_id: str, user_id: str, frm: str | None, to: str | None, as_json: bool) -> None:
    """A user's NPS and survey responses, newest first."""
    from streams.tables import sentiment_table

    emit(read(lambda r: r.sentiment(app_id, user_id, frm=frm, to=to)), as_json, sentiment_table)


@main.command()
@click.argument("app_id")
@click.argument("user_id")
@click.option("--json", "as_json", is_flag=True)
def engagement(app_id: str, user_id: str, as_json: bool) -> None:
    """A user's flows, spotlights, banners and checklists with their status."""
    from streams.tables import engagement_table

    emit(read(lambda r: r.engagement(app_id, user_id)), as_json, engagement_table)


@main.command()
@click.argument("app_id")
@click.argument("company_id")
@day_option("--from")
@day_option("--to")
@click.option("--search", help="case-insensitive substring of event names and pages")
@click.option("--json", "as_json", is_flag=True)
def company(
    app_id: str, company_id: str, frm: str | None, to: str | None, search: str | None, as_json: bool
) -> None:
    """A company's profile: header, properties and the overview of its counted members."""
    from streams.tables import company_table

    emit(
        read(lambda r: r.company(app_id, company_id, frm=frm, to=to, search=search)),
        as_json,
        company_table,
    )


@main.command("company-users")
@click.argument("app_id")
@click.argument("company_id")
@click.option("--json", "as_json", is_flag=True)
def company_users(app_id: str, company_id: str, as_json: bool) -> None:
    """Every current member of a company, last seen first (excluded ones flagged)."""
    from streams.tables import users_table

    emit(read(lambda r: r.company_users(app_id, company_id)), as_json, users_table)


@main.command()
@click.argument("app_id")
@click.option(
    "--sort", type=click.Choice(["last_seen", "signed_up"]), default="last_seen", show_default=True
)
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@click.option("--cursor", help="the next_cursor of the previous page")
@click.option("--json", "as_json", is_flag=True)
def users(app_id: str, sort: str, limit: int, cursor: str | None, as_json: bool) -> None:
    """The app's users, newest first (excluded ones flagged), a page at a time."""
    from streams.tables import users_table

    rows, next_cursor = read(lambda r: r.users(app_id, sort=sort, limit=limit, cursor=cursor))
    if as_json:
        emit({"users": rows, "next_cursor": next_cursor}, True, users_table)
    else:
        users_table(rows)
        if next_cursor:
            click.echo(f"next page: --cursor '{next_cursor}'")


# The CLI spells reset_content with a dash.
COMMANDS = {
    "exclude": "exclude",
    "include": "include",
    "reset-content": "reset_content",
    "delete": "delete",
}


@main.command("command")
@click.argument("command", type=click.Choice(list(COMMANDS)))
@click.argument("app_id")
@click.argument("user_id")
@click.option("--at", "at", help="event time of the command (RFC 3339 or epoch ms; default now)")
@click.option("--reason", help="why, kept with the command")
def command(command: str, app_id: str, user_id: str, at: str | None, reason: str | None) -> None:
    """Publish an operator command for one user to the commands topic."""
    from schemas.codec import Rejected
    from streams.publish import command_record, publish_records

    issued: Any = int(time.time() * 1000) if at is None else (int(at) if at.isdigit() else at)
    record = command_record(COMMANDS[command], app_id, user_id, issued, reason)
    try:
        asyncio.run(publish_records([record], settings()))
    except Rejected as exc:
        fail(f"{exc.reason}: {exc.detail}")
    click.echo(f"published {command} for {user_id} ({record['command_id']})")


@main.command()
@click.option("--host", help="address to listen on [default: PROFILES_API_HOST, 127.0.0.1]")
@click.option("--port", type=click.IntRange(0, 65535), help="[default: PROFILES_API_PORT, 8000]")
def serve(host: str | None, port: int | None) -> None:
    """Run the explorer: the HTTP API (/api/docs) and the profile pages (/)."""
    import socket

    import uvicorn

    from explorer.api import create_app
    from explorer.tokens import Tokens

    cfg = settings()
    host, port = host or cfg.api_host, cfg.api_port if port is None else port
    one_off = None
    if cfg.api_tokens is None:
        tokens, one_off = Tokens.one_off()
    else:
        try:
            tokens = Tokens(cfg.api_tokens.get_secret_value())
        except ValueError as exc:
            fail(f"bad setting PROFILES_API_TOKENS: {exc}", 2)
    r = reader(cfg)
    try:
        r.namespace  # noqa: B018 -- Redis answers, or the server does not start
    except redis.RedisError as exc:
        fail(f"Redis is not reachable at {cfg.redis_url}: {exc}")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP spelled out: asyncio turns Nagle off (TCP_NODELAY) only on sockets that say
    # so, and with Nagle on, every answer on a kept-alive connection waited ~40 ms for an ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        fail(f"cannot listen on {host}:{port}: {exc.strerror}")
    port = sock.getsockname()[1]
    where = f"http://{'[' + host + ']' if family == socket.AF_INET6 else host}:{port}/"
    if one_off is not None:
        click.echo("PROFILES_API_TOKENS is not set: a one-off token for every app, until exit")
        where += f"#token={one_off}"
    click.echo(f"explorer: {where}  (API documentation: {where.split('#')[0]}api/docs)", err=False)
    config = uvicorn.Config(create_app(cfg, tokens, r), log_level="warning")
    uvicorn.Server(config).run(sockets=[sock])


@main.group()
def export() -> None:
    """Export profiles (csv, json, jsonl)."""


@export.command("user")
@click.argument("app_id")
@click.argument("user_id")
@click.option(
    "--format", "fmt", type=click.Choice(["csv", "json"]), default="json", show_default=True
)
@click.option("--out", type=click.File("w", encoding="utf-8"), default="-")
def export_user(app_id: str, user_id: str, fmt: str, out: Any) -> None:
    """One user's header, properties, overview, sessions, sentiment and engagement."""
    from streams.export import user_document, write_user

    write_user(read(lambda r: user_document(r, app_id, user_id)), fmt, out)


@export.command("users")
@click.argument("app_id")
@click.option(
    "--format", "fmt", type=click.Choice(["csv", "jsonl"]), default="jsonl", show_default=True
)
@click.option("--cursor", help="resume after this cursor (printed when an export stops)")
@click.option("--segment", "segment_id", help="only the members of this user segment")
@click.option("--out", type=click.File("w", encoding="utf-8"), default="-")
def export_users(
    app_id: str, fmt: str, cursor: str | None, segment_id: str | None, out: Any
) -> None:
    """Every user of an app, one row each, streamed in a stable order; resumable."""
    import csv

    from streams.export import USER_COLUMNS, iter_users, user_row

    cfg = settings()
    r = reader(cfg)
    if segment_id is not None:
        d = _definition(cfg, segment_id)[1]["definition"]
        if (d["app_id"], d["scope"]) != (app_id, "user"):
            fail(f"segment {segment_id!r} is a {d['scope']} segment of app {d['app_id']!r}")
    writer = csv.writer(out) if fmt == "csv" else None
    if writer is not None and cursor is None:
        writer.writerow(USER_COLUMNS)
    count, last = 0, cursor
    show = sys.stderr.isatty()
    total = 0
    if show:
        total = r.count_users(app_id) if segment_id is None else r.count_members(app_id, segment_id)
    try:
        for profile, resume in iter_users(r, app_id, cursor, segment=segment_id):
            if writer is not None:
                writer.writerow(user_row(profile))
            else:
                out.write(json.dumps(profile, ensure_ascii=False) + "\n")
            count, last = count + 1, resume
            if show and count % 100 == 0:
                progress(count, total)
    except (KeyboardInterrupt, redis.RedisError) as exc:
        out.flush()
        fail(f"stopped after {count} users ({type(exc).__name__}); resume with --cursor '{last}'")
    if show:
        progress(count, total)
        click.echo("", err=True)


# ---- segments --------------------------------------------------------------------------------


@main.group()
def segments() -> None:
    """Rule-based user and company segments (definitions live in <prefix>segments)."""


def _definitions(cfg: Settings) -> tuple[Reader, dict[str, dict[str, Any]]]:
    r = reader(cfg)
    return r, r.segments()


def _definition(cfg: Settings, segment_id: str) -> tuple[Reader, dict[str, Any]]:
    r, found = _definitions(cfg)
    if segment_id not in found:
        fail(f"segment {segment_id!r} not found", EXIT_NOT_FOUND)
    return r, found[segment_id]


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
    _r, found = _definitions(cfg)
    other = found.get(segment.id, {}).get("definition", {}).get("app_id", segment.app_id)
    if other != segment.app_id:
        fail(f"segment {segment.id!r} belongs to app {other!r}; remove it first or pick another id")
    offset = asyncio.run(publish(cfg, segment.id, segment))
    if wait:
        _await_applied(cfg, segment.id, offset, timeout)
        summary = _definition(cfg, segment.id)[1]
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
    summary = _definition(settings(), segment_id)[1]

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
    _definition(cfg, segment_id)
    offset = asyncio.run(publish(cfg, segment_id, None))
    if wait:
        _await_applied(cfg, segment_id, offset, timeout)
    click.echo(f"segment {segment_id} removed")


@segments.command("members")
@click.argument("segment_id")
@click.option("--json", "as_json", is_flag=True)
def segments_members(segment_id: str, as_json: bool) -> None:
    """Every member id of a segment, in id order."""
    r, entry = _definition(settings(), segment_id)
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


def progress(done: int, total: int) -> None:
    """A one-line progress bar on stderr (only when it is a terminal)."""
    total = max(total, done, 1)
    filled = 30 * done // total
    click.echo(f"\r[{'#' * filled}{'.' * (30 - filled)}] {done}/{total} users", err=True, nl=False)


# ---- dead letters ----------------------------------------------------------------------------


@main.group()
def dlq() -> None:
    """Inspect dead-lettered records by reason and redrive them after a fix."""


def dlq_read(cfg: Settings) -> tuple[list[Any], set[str]]:
    """Every letter of the DLQ and the coordinates of those already redriven."""
    from streams.dlq import read_letters, read_markers, redriven_coordinates

    async def both() -> tuple[list[Any], set[str]]:
        letters = await read_letters(cfg)
        return letters, redriven_coordinates(letters, await read_markers(cfg))

    return asyncio.run(both())


@dlq.command("list")
@click.option("--json", "as_json", is_flag=True)
def dlq_list(as_json: bool) -> None:
    """Dead letters by reason: count, how many were redriven, source topics, first/last failure."""
    from streams.dlq import summarize

    letters, done = dlq_read(settings())

    def table(s: dict[str, Any]) -> None:
        click.echo(f"dlq: {s['total']} letters")
        for reason, row in s["reasons"].items():
            click.echo(
                f"{reason}: {row['count']} (redriven {row['redriven']}), "
                f"failed {row['first_failed_at']} .. {row['last_failed_at']}"
            )
            for topic, count in row["topics"].items():
                click.echo(f"  {topic or '(unknown)'}: {count}")

    emit(summarize(letters, done), as_json, table)


@dlq.command("show")
@click.option("--reason", help="only letters of this reason")
@click.option("--limit", type=click.IntRange(min=1), help="at most N letters, oldest first")
@click.option("--json", "as_json", is_flag=True, help="JSON, with each value as base64")
def dlq_show(reason: str | None, limit: int | None, as_json: bool) -> None:
    """The dead letters (oldest failure first): reason, detail, source, key and the value."""
    from streams.dlq import letter_view

    letters, done = dlq_read(settings())
    chosen = sorted(
        (x for x in letters if reason is None or x.reason == reason),
        key=lambda x: (x.failed_at, x.dlq_partition, x.dlq_offset),
    )[:limit]
    views = [letter_view(x, x.coordinates in done, as_json) for x in chosen]

    def table(rows: list[dict[str, Any]]) -> None:
        for v in rows:
            flag = " (redriven)" if v["redriven"] else ""
            click.echo(
                f"dlq[{v['dlq_partition']}]@{v['dlq_offset']} {v['reason']} {v['failed_at']}{flag}"
            )
            click.echo(f"  detail: {v['detail']}")
            click.echo(f"  source: {v['topic']}[{v['partition']}]@{v['offset']} key {v['key']!r}")
            click.echo(f"  value ({v['value_bytes']} bytes): {v['value_preview']}")
        if not rows:
            click.echo("no dead letters" + (f" of reason {reason}" if reason else ""))

    emit(views, as_json, table)


@dlq.command("redrive")
@click.option("--reason", help="only letters of this reason")
@click.option("--dry-run", is_flag=True, help="count what would be sent, send nothing")
@click.option("--json", "as_json", is_flag=True)
def dlq_redrive(reason: str | None, dry_run: bool, as_json: bool) -> None:
    """Send dead letters back to their source topic and partition, unchanged, after a fix.

    Each letter's original key and value bytes go back as they were, so the record keeps its
    event time and event_id (one the worker had accepted after all is deduplicated; one that is
    still bad is dead-lettered again, as a new letter). Every letter is redriven at most once:
    the topic <prefix>dlq-redriven records `sending` before and `done` after its delivery, and
    a redrive that stopped in between checks the target partition for the record (by its
    header) before sending anything again. So an interrupted redrive is simply run again, and
    letters of other reasons stay for a later redrive. Starting a redrive fences an earlier one
    still running. Letters whose source topic is not a source topic of this pipeline are
    refused (exit 1).
    """
    from streams.dlq import redrive

    result = asyncio.run(redrive(settings(), reason, dry_run))
    if as_json:
        emit(result.as_dict(), True, lambda _: None)
    else:
        verb = "would redrive" if dry_run else "redriven"
        counts = ", ".join(f"{r} {n}" for r, n in sorted(result.redriven.items()))
        click.echo(f"{verb} {sum(result.redriven.values())} letters ({counts or 'none'})")
        if result.already:
            counts = ", ".join(f"{r} {n}" for r, n in sorted(result.already.items()))
            click.echo(f"already redriven before: {sum(result.already.values())} ({counts})")
    if result.refused:
        topics = ", ".join(f"{t} {n}" for t, n in sorted(result.refused.items()))
        fail(
            f"refused {sum(result.refused.values())} letters whose source topic is not a "
            f"source topic of this pipeline ({topics})"
        )


@main.command("replay")
@click.option(
    "--from-beginning",
    "from_beginning",
    is_flag=True,
    help="rebuild from the start of the log (the default)",
)
@click.option(
    "--since",
    help="rebuild only from the records at or after this time (RFC 3339 "
    "or epoch ms); older ones are left out of the new views",
)
@click.option("--namespace", "target", help="the new physical namespace (default: next number)")
@click.option(
    "--verify",
    is_flag=True,
    help="rebuild into a scratch namespace and list every "
    "difference with the live views; exit 1 when there are any",
)
@click.option("--json", "as_json", is_flag=True)
def replay_command(
    from_beginning: bool, since: str | None, target: str | None, verify: bool, as_json: bool
) -> None:
    """Rebuild every view from Kafka into a fresh namespace while the live worker serves,
    then flip readers and the worker to it. Run it again to resume an interrupted replay."""
    from replay.flip import ReplayError, replay
    from replay.verify import verify as verify_views
    from schemas.timefmt import parse_timestamp
    from streams.kafka import ensure_topics
    from streams.redis_clients import async_client, sync_client

    cfg = settings()
    if from_beginning and since:
        fail("--from-beginning and --since exclude each other", 2)
    since_ms = None
    if since is not None:
        try:
            since_ms = parse_timestamp(int(since) if since.isdigit() else since)
        except ValueError as exc:
            fail(f"--since: {exc}", 2)

    async def go() -> Any:
        await ensure_topics(cfg)
        client = async_client(cfg)
        try:
            if verify:
                return await verify_views(cfg, client, sync_client(cfg))
            return await replay(cfg, client, since_ms=since_ms, namespace=target)
        finally:
            await client.aclose()

    try:
        result = asyncio.run(go())
    except ReplayError as exc:
        fail(str(exc))
    if verify:
        rows = [
            {"entity": d.entity, "field": d.field, "live": d.live, "rebuilt": d.rebuilt}
            for d in result
        ]
        if as_json:
            click.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        else:
            for row in rows:
                click.echo(
                    f"{row['entity']}  {row['field']}: live {row['live']!r} "
                    f"rebuilt {row['rebuilt']!r}"
                )
            click.echo(f"{len(rows)} differences")
        sys.exit(1 if rows else 0)
    summary = {
        "previous": result.previous,
        "current": result.current,
        "replayed": result.progress.done,
        "skipped_bad": result.progress.skipped,
        "removed_keys": result.removed_keys,
    }
    if as_json:
        click.echo(json.dumps(summary))
    else:
        click.echo(
            f"replayed {summary['replayed']} records into {result.current!r}; "
            f"removed {result.removed_keys} keys of {result.previous!r}"
        )


@main.command("purge")
@click.argument("app_id", metavar="APP")
@click.argument("user_ids", nargs=-1, required=True, metavar="USER...")
@click.option("--dry-run", is_flag=True, help="count what would be removed, change nothing")
@click.option("--json", "as_json", is_flag=True)
def purge_command(app_id: str, user_ids: tuple[str, ...], dry_run: bool, as_json: bool) -> None:
    """Remove deleted users' erased records from the Kafka topics (GDPR), losing nothing else.

    For each USER, T is the time of its latest applied `delete` (a user without one is
    refused, exit 1). Every record of the user with event time <= T goes from the source
    topics (its delete commands stay, so late records keep being erased), as do its DLQ
    letters; company deltas the worker has applied go too. Each affected partition is
    rewritten through the staging topic <prefix>purge-staging: surviving records are staged,
    the partition is truncated at the end offset sampled at start, and the staged records are
    produced again in order. An interrupted purge is finished by the next one."""
    from replay.purge import PurgeError, purge
    from streams.redis_clients import async_client

    cfg = settings()

    def report(line: str) -> None:
        click.echo(line, err=True)

    async def go() -> Any:
        client = async_client(cfg)
        try:
            return await purge(cfg, client, app_id, user_ids, dry_run=dry_run, report=report)
        finally:
            await client.aclose()

    try:
        result = asyncio.run(go())
    except PurgeError as exc:
        fail(str(exc))
    summary = result.as_dict()
    if as_json:
        click.echo(json.dumps(summary, ensure_ascii=False))
    else:
        verb = "would remove" if dry_run else "removed"
        for user_id, row in summary["users"].items():
            click.echo(f"{user_id}: deleted until {row['deleted_until']}, {verb} {row['removed']}")
        for topic, row in summary["topics"].items():
            click.echo(f"{topic}: {verb} {row['removed']}, kept {row['kept']}")
    for user_id, why in summary["refused"].items():
        click.echo(f"profiles: refused {user_id}: {why}", err=True)
    if summary["refused"]:
        sys.exit(1)


# ---- Redis access ----------------------------------------------------------------------------


@main.group()
def acl() -> None:
    """Redis ACL roles: print the `ACL SETUSER` line of a role, for redis-cli.

    The password is read from stdin (first line; prompted on a terminal) and printed only as
    its SHA-256: `printf %s "$PW" | profiles acl reader APP | redis-cli`."""


def _acl_password() -> str:
    import getpass

    if sys.stdin.isatty():
        return getpass.getpass("password of the role: ")
    return sys.stdin.readline().rstrip("\r\n")


def _acl_line(user: str, rules: Callable[[], list[str]]) -> None:
    from projections.acl import setuser

    try:
        checked = rules()  # a bad app id or namespace fails before the password is asked
        click.echo(setuser(user, _acl_password(), checked))
    except ValueError as exc:
        fail(str(exc), 2)


also_option = click.option(
    "--also",
    multiple=True,
    metavar="NAME",
    help="another physical namespace to cover (one given to `replay --namespace`)",
)


@acl.command("worker")
@click.option("--user", help="ACL user name (default: <namespace>-worker)")
@also_option
def acl_worker(user: str | None, also: tuple[str, ...]) -> None:
    """The worker role: every key of the namespace (all apps, every replay generation, the
    segments registry, the pointer), the commands the worker and operator commands send."""
    from projections.acl import worker_rules

    cfg = settings()
    _acl_line(user or f"{cfg.namespace}-worker", lambda: worker_rules(cfg.namespace, also))


@acl.command("reader")
@click.argument("app_id", metavar="APP")
@click.option("--user", help="ACL user name (default: <namespace>-reader-<APP>)")
@also_option
def acl_reader(app_id: str, user: str | None, also: tuple[str, ...]) -> None:
    """The reader role of one app: read-only commands on APP's keys (every replay generation)
    and the namespace pointer; nothing of other apps, no writes."""
    from projections.acl import reader_rules

    cfg = settings()
    name = user or f"{cfg.namespace}-reader-{app_id}"
    _acl_line(name, lambda: reader_rules(cfg.namespace, app_id, also))


def run() -> None:
    """Entry point: known failures are one line and a non-zero exit, never a traceback."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("aiokafka").setLevel(logging.ERROR)  # retries it recovers from itself
    logging.getLogger("aiokafka").addFilter(kafka_bootstrap)
    try:
        main(standalone_mode=True)
    except KafkaConnectionError as exc:
        if kafka_bootstrap.last is None:
            fail(f"cannot reach a service: {exc}", 2)
        server, why = kafka_bootstrap.last
        if isinstance(why, LOGIN_REFUSALS):
            fail(f"kafka refused the login: {why}", 2)
        fail(f"cannot reach a service: kafka at {server}: {why}", 2)
    except KafkaSecurityError as exc:
        fail(f"kafka: {exc}", 2)
    except redis.AuthenticationError as exc:  # a ConnectionError, but retrying will not help
        fail(f"redis refused the credentials (PROFILES_REDIS_USERNAME/PASSWORD): {exc}", 2)
    except redis.exceptions.NoPermissionError as exc:
        fail(f"redis: the ACL user may not do this: {exc}", 2)
    except redis.ConnectionError as exc:
        fail(f"cannot reach a service: {exc}", 2)
    except KafkaError as exc:
        fail(f"kafka: {exc}", 2)
    except redis.RedisError as exc:
        fail(f"redis: {exc}", 2)
