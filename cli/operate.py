"""What operators do: commands for a user, exports, dead letters, replay, purge and the Redis
and Kafka ACL roles."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Callable
from typing import Any

import click
import redis

from cli.common import (
    EXIT_NOT_FOUND,
    EXIT_USAGE,
    definition,
    emit,
    fail,
    progress,
    read,
    reader,
    settings,
)
from projections.reader import NotFound
from streams.kafka_acl import ROLES as KAFKA_ROLES
from streams.settings import Settings

# The CLI spells reset_content with a dash.
COMMANDS = {
    "exclude": "exclude",
    "include": "include",
    "reset-content": "reset_content",
    "delete": "delete",
    "unmerge": "unmerge",  # USER_ID is the previous id (docs/design.md §7)
}


@click.command("command")
@click.argument("command", type=click.Choice(list(COMMANDS)))
@click.argument("app_id")
@click.argument("user_id")
@click.option("--at", "at", help="event time of the command (RFC 3339 or epoch ms; default now)")
@click.option("--reason", help="why, kept with the command")
def command(command: str, app_id: str, user_id: str, at: str | None, reason: str | None) -> None:
    """Publish an operator command for one user to the commands topic. `unmerge` takes the
    id that was merged into another: it stands alone again."""
    from schemas.codec import Rejected
    from streams.publish import command_record, publish_records

    issued: Any = int(time.time() * 1000) if at is None else (int(at) if at.isdigit() else at)
    record = command_record(COMMANDS[command], app_id, user_id, issued, reason)
    try:
        asyncio.run(publish_records([record], settings()))
    except Rejected as exc:
        fail(f"{exc.reason}: {exc.detail}")
    click.echo(f"published {command} for {user_id} ({record['command_id']})")


@click.command("merge")
@click.argument("app_id")
@click.argument("previous_id")
@click.argument("user_id")
@click.option("--at", "at", help="event time of the alias (RFC 3339 or epoch ms; default now)")
def merge(app_id: str, previous_id: str, user_id: str, at: str | None) -> None:
    """Merge PREVIOUS_ID into USER_ID (an operator's alias, docs/design.md §7): its records
    count for USER_ID's profile. `profiles command unmerge APP PREVIOUS_ID` undoes it."""
    from schemas.codec import Rejected
    from streams.publish import alias_record, publish_records

    when: Any = int(time.time() * 1000) if at is None else (int(at) if at.isdigit() else at)
    record = alias_record(app_id, previous_id, user_id, when)
    try:
        asyncio.run(publish_records([record], settings()))
    except Rejected as exc:
        fail(f"{exc.reason}: {exc.detail}")
    click.echo(f"published the merge of {previous_id} into {user_id} ({record['event_id']})")


@click.group()
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
    from projections.export import user_document, write_user

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

    from projections.export import USER_COLUMNS, iter_users, user_row

    cfg = settings()
    r = reader(cfg)
    if segment_id is not None:
        d = definition(cfg, segment_id)[1]["definition"]
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
    except NotFound as exc:  # an app without data
        fail(str(exc), EXIT_NOT_FOUND)
    except (KeyboardInterrupt, redis.RedisError) as exc:
        out.flush()
        fail(f"stopped after {count} users ({type(exc).__name__}); resume with --cursor '{last}'")
    if show:
        progress(count, total)
        click.echo("", err=True)


@click.group()
def dlq() -> None:
    """Inspect dead-lettered records by reason and redrive them after a fix."""


def dlq_read(cfg: Settings) -> tuple[list[Any], set[str]]:
    """Every letter of the DLQ and the coordinates of those already redriven."""
    from replay.dlq import read_letters, read_markers, redriven_coordinates

    async def both() -> tuple[list[Any], set[str]]:
        letters = await read_letters(cfg)
        return letters, redriven_coordinates(letters, await read_markers(cfg))

    return asyncio.run(both())


@dlq.command("list")
@click.option("--json", "as_json", is_flag=True)
def dlq_list(as_json: bool) -> None:
    """Dead letters by reason: count, how many were redriven, source topics, first/last failure."""
    from replay.dlq import summarize

    letters, done = dlq_read(settings())

    def table(s: dict[str, Any]) -> None:
        click.echo(f"dead letters: {s['total']}")
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
    from replay.dlq import letter_view

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
    from replay.dlq import redrive

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


@click.command("replay")
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
        fail("bad parameter: --from-beginning and --since exclude each other", EXIT_USAGE)
    since_ms = None
    if since is not None:
        try:
            since_ms = parse_timestamp(int(since) if since.isdigit() else since)
        except ValueError as exc:
            fail(f"bad parameter: --since: {exc}", EXIT_USAGE)

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


@click.command("purge")
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


@click.group()
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
        fail(f"bad parameter: {exc}", EXIT_USAGE)


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


@click.command("kafka-acl")
@click.argument("role", type=click.Choice(KAFKA_ROLES), metavar="ROLE")
@click.argument("who", metavar="PRINCIPAL")
@click.option("--apply", "apply_acls", is_flag=True, help="create the ACLs on the broker")
@click.option("--revoke", is_flag=True, help="delete these ACLs of PRINCIPAL from the broker")
@click.option("--json", "as_json", is_flag=True)
def kafka_acl(role: str, who: str, apply_acls: bool, revoke: bool, as_json: bool) -> None:
    """Kafka ACL roles: print the `kafka-acls.sh` lines that give PRINCIPAL (User:NAME) the
    ACLs of ROLE on this pipeline's topics (PROFILES_TOPIC_PREFIX) and consumer group
    (PROFILES_GROUP_ID). --apply creates them, --revoke deletes them, both through the
    current Kafka settings, whose login must be a super user."""
    from streams.kafka import create_acls, delete_acls
    from streams.kafka_acl import bindings, kafka_acls_lines

    cfg = settings()
    if apply_acls and revoke:
        fail("bad parameter: --apply and --revoke exclude each other", EXIT_USAGE)
    try:
        found = bindings(role, who, cfg)
    except ValueError as exc:
        fail(f"bad parameter: {exc}", EXIT_USAGE)
    deleted = asyncio.run(delete_acls(cfg, found)) if revoke else None
    if apply_acls:
        asyncio.run(create_acls(cfg, found))
    if as_json:
        out: dict[str, Any] = {
            "role": role,
            "principal": found[0].principal,
            "topic_prefix": cfg.topic_prefix,
            "group": cfg.group_id,
            "bindings": [b.as_json() for b in found],
            "applied": apply_acls,
        }
        if deleted is not None:
            out["deleted"] = deleted
        click.echo(json.dumps(out, ensure_ascii=False, indent=2))
        return
    verb = "--remove" if revoke else "--add"
    for line in kafka_acls_lines(found, cfg.kafka_bootstrap, verb):
        click.echo(line)
    what = f"the {role} role for {found[0].principal}"
    if apply_acls:
        click.echo(f"# applied: {len(found)} ACLs of {what}")
    elif deleted is not None:
        click.echo(f"# revoked: {deleted} of the {len(found)} ACLs of {what} were there")
