"""The pipeline: run the worker, publish records, status, topics, wait, generate demo data,
the wire schemas, and serve the explorer."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from pathlib import Path
from typing import Any

import click
import redis

from cli.common import (
    EXIT_CONFIG,
    emit,
    fail,
    kafka_bootstrap,
    reader,
    settings,
)


@click.command()
@click.option(
    "--loglevel",
    type=click.Choice(["debug", "info", "warning", "error", "critical"], case_sensitive=False),
    default="warning",
    show_default=True,
    help="of Faust's and Kafka's lines; the worker's own (partitions, progress, dead letters) "
    "are always logged",
)
def worker(loglevel: str) -> None:
    """Run the stream processor (one per core; more join the consumer group). It logs its
    partitions when they change and its progress every 10 s while it has work, and serves
    Prometheus metrics on PROFILES_METRICS_PORT (9464; 0: none)."""
    from projections.namespaces import OtherFormat, ProjectionsLost
    from streams.app import build_app
    from streams.faust_light import Worker, use_uvloop
    from streams.kafka import ensure_topics
    from streams.startup import claim_projections

    cfg = settings()
    try:
        Path(cfg.datadir).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        fail(f"cannot create the worker's state folder PROFILES_DATADIR={cfg.datadir}: {exc}", 2)
    use_uvloop()  # every loop from here on, Faust's consumer thread's too
    for topic in asyncio.run(ensure_topics(cfg)):  # a refused login stops here, in one line
        click.echo(f"profiles: {topic.warning()}", err=True)  # a topic that keeps less
    # From here on Faust's own connection failures stay in the worker's log.
    logging.getLogger("aiokafka").removeFilter(kafka_bootstrap)
    try:
        asyncio.run(claim_projections(cfg))
    except (ProjectionsLost, OtherFormat) as exc:
        fail(str(exc), exc.exit_code)
    Worker(build_app(cfg), loglevel=loglevel.lower()).execute_from_commandline()


@click.command()
@click.argument("file", type=click.File("r", encoding="utf-8"))
@click.option("--json", "as_json", is_flag=True, help="send JSON values instead of msgpack")
@click.option(
    "--commands",
    "with_commands",
    is_flag=True,
    help="publish command records too (an operator's; refused otherwise)",
)
def publish(file: Any, as_json: bool, with_commands: bool) -> None:
    """Validate FILE.jsonl (one record a line) and publish the valid records (command records
    only with --commands)."""
    from streams.publish import check_lines, send_records

    cfg = settings()
    good, report = check_lines(file, cfg, commands=with_commands)
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


@click.command()
@click.option("--partitions", "per_partition", is_flag=True, help="a line per topic partition")
@click.option(
    "--window",
    type=click.FloatRange(min=0, max=60),
    default=2.0,
    show_default=True,
    help="seconds over which to measure the rates (0: no rates)",
)
@click.option("--json", "as_json", is_flag=True)
def status(per_partition: bool, window: float, as_json: bool) -> None:
    """Workers, lag, records processed, the rates, dead letters (--partitions: per topic
    partition too; --json: everything)."""
    from streams.status import pipeline_status

    result = asyncio.run(pipeline_status(settings(), window))

    def table(s: dict[str, Any]) -> None:
        for group in s["groups"]:
            hosts = sorted({w["host"] for w in group["workers"]})
            workers = len(group["workers"])
            where = f" on {', '.join(hosts)}" if hosts else ""
            click.echo(
                f"group {group['group']}: {workers} worker{'s' * (workers != 1)}{where}, "
                f"lag {group['lag']}, processed {group['processed']}"
            )
            if "rate" in group:
                click.echo(
                    f"  over {window:g} s: {group['rate']:,.0f} records/s processed, "
                    f"{group['incoming']:,.0f} records/s arriving"
                )
            for row in group["partitions"] if per_partition else []:
                if row["end"]:
                    click.echo(
                        f"  {row['topic']}[{row['partition']}] "
                        f"committed {row['committed']} end {row['end']} lag {row['lag']}"
                    )
        click.echo(f"dead letters: {s['dlq']}")
        for topic in s["retention"]:
            click.echo(topic["warning"])

    emit(result, as_json, table)


@click.command()
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


@click.command()
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


@click.command()
@click.option("--users", default=200, show_default=True)
@click.option("--days", default=30, show_default=True)
@click.option("--seed", default=1, show_default=True)
@click.option("--commands", is_flag=True, help="include operator commands")
@click.option("--duplicates", default=0.0, show_default=True, help="fraction of records repeated")
@click.option("--shuffle", is_flag=True, help="out of order")
@click.option(
    "--anonymous",
    type=click.FloatRange(0, 1),
    default=0.0,
    show_default=True,
    help="fraction of users first tracked under anonymous ids, merged at sign-up (aliases)",
)
@click.option("--out", type=click.Path(dir_okay=False, writable=True), default="-")
def generate(
    users: int,
    days: int,
    seed: int,
    commands: bool,
    duplicates: float,
    shuffle: bool,
    anonymous: float,
    out: str,
) -> None:
    """Write a realistic demo data set as JSON lines (event times end now)."""
    from schemas.generate import generate as make
    from schemas.generate import write_jsonl

    records = make(
        users=users,
        days=days,
        seed=seed,
        commands=commands,
        duplicates=duplicates,
        shuffle=shuffle,
        anonymous=anonymous,
        end_ms=int(time.time() * 1000),
    )
    if out == "-":
        write_jsonl(records, sys.stdout)
    else:
        write_jsonl(records, out)
        click.echo(f"wrote {len(records)} records to {out}", err=True)


@click.group()
def schemas() -> None:
    """Wire schemas for SDK authors."""


@schemas.command("export")
@click.argument("directory", type=click.Path(file_okay=False))
def schemas_export(directory: str) -> None:
    """Write a JSON Schema file for every record type into DIRECTORY."""
    from schemas.export import export_json_schemas

    paths = export_json_schemas(Path(directory))
    click.echo(f"wrote {len(paths)} schema files to {directory}")


@click.command()
@click.option("--host", help="address to listen on [default: PROFILES_API_HOST, 127.0.0.1]")
@click.option("--port", type=click.IntRange(0, 65535), help="[default: PROFILES_API_PORT, 8000]")
def serve(host: str | None, port: int | None) -> None:
    """Run the explorer: the HTTP API (/api/docs) and the profile pages (/)."""
    import socket

    import uvicorn

    from explorer.api import create_app
    from explorer.ingest import PATH, WriteKeys
    from explorer.tokens import Tokens
    from streams.kafka import ensure_topics

    cfg = settings()
    host, port = host or cfg.api_host, cfg.api_port if port is None else port
    one_off = None
    if cfg.api_tokens is None:
        tokens, one_off = Tokens.one_off()
    else:
        try:
            tokens = Tokens(cfg.api_tokens.get_secret_value())
        except ValueError as exc:
            fail(f"bad setting PROFILES_API_TOKENS: {exc}", EXIT_CONFIG)
    write_keys = None
    if cfg.write_keys is not None:
        try:
            write_keys = WriteKeys(cfg.write_keys.get_secret_value())
        except ValueError as exc:
            fail(f"bad setting PROFILES_WRITE_KEYS: {exc}", EXIT_CONFIG)
        if shared := write_keys.also_read_tokens(tokens):
            fail(
                f"bad settings: the write key of {shared[0]!r} is a read token of "
                "PROFILES_API_TOKENS too; a write key is public in pages, so it must never read",
                EXIT_CONFIG,
            )
    r = reader(cfg)
    try:
        r.namespace  # noqa: B018 -- Redis answers, or the server does not start
    except redis.RedisError as exc:
        fail(f"Redis is not reachable at {cfg.redis_url}: {exc}")
    if write_keys is not None:  # Kafka answers and the topics exist, or it does not start
        asyncio.run(ensure_topics(cfg))
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
    base = where.split("#")[0]
    click.echo(f"explorer: {where}  (API documentation: {base}api/docs)", err=False)
    if write_keys is not None:
        apps = ", ".join(write_keys.apps())
        click.echo(f"ingestion: {base.rstrip('/')}{PATH}/batch and /record, for {apps}")
    config = uvicorn.Config(create_app(cfg, tokens, r, write_keys), log_level="warning")
    uvicorn.Server(config).run(sockets=[sock])
