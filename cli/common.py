"""What every group of the `profiles` command shares: settings, the reader, one-line failures
and exit codes, day options, output as a table or JSON, and a progress line."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from typing import Any, NoReturn

import click
from pydantic import ValidationError

from projections.reader import NotFound, Reader
from schemas.timefmt import parse_day
from streams.kafka import BootstrapFailures
from streams.settings import Settings

# Exit codes (the README's table; the worker's own 4, 5 and 6 are in streams/guard.py and
# projections/namespaces.py). 64 and 78 are sysexits.h's EX_USAGE and EX_CONFIG.
EXIT_FAILED = 1  # the command ran and did not do what it was asked
EXIT_SERVICE = 2  # Kafka or Redis cannot be reached, or refused the login or the command
EXIT_NOT_FOUND = 3  # no such app, user, company or segment
EXIT_USAGE = 64  # a bad command line: unknown option, bad value, missing argument
EXIT_CONFIG = 78  # a bad PROFILES_* setting
# Why aiokafka could not reach a bootstrap server, said in one line by run().
kafka_bootstrap = BootstrapFailures()


def fail(message: str, code: int = EXIT_FAILED) -> NoReturn:
    click.echo(f"profiles: {message}", err=True)
    sys.exit(code)


def settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        if not first["loc"]:  # a rule across settings, whose message names them
            fail(f"bad settings: {first['msg'].removeprefix('Value error, ')}", EXIT_CONFIG)
        fail(f"bad setting PROFILES_{str(first['loc'][0]).upper()}: {first['msg']}", EXIT_CONFIG)


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


def period_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """--from and --to of a view; a --from after its --to is a bad parameter (one line, exit
    64), as the API says (400)."""

    @functools.wraps(command)
    def checked(*args: Any, frm: str | None, to: str | None, **kwargs: Any) -> Any:
        if frm is not None and to is not None and frm > to:
            fail(f"bad parameter: --from {frm} is after --to {to}", EXIT_USAGE)
        return command(*args, frm=frm, to=to, **kwargs)

    return day_option("--from")(day_option("--to")(checked))


def emit(value: Any, as_json: bool, table: Callable[[Any], None]) -> None:
    if as_json:
        click.echo(json.dumps(value, ensure_ascii=False, indent=2))
    else:
        table(value)


def read(call: Callable[[Reader], Any]) -> Any:
    try:
        return call(reader(settings()))
    except NotFound as exc:
        fail(str(exc), EXIT_NOT_FOUND)


def definitions(cfg: Settings) -> tuple[Reader, dict[str, dict[str, Any]]]:
    r = reader(cfg)
    return r, r.segments()


def definition(cfg: Settings, segment_id: str) -> tuple[Reader, dict[str, Any]]:
    r, found = definitions(cfg)
    if segment_id not in found:
        fail(f"segment {segment_id!r} not found", EXIT_NOT_FOUND)
    return r, found[segment_id]


def progress(done: int, total: int) -> None:
    """A one-line progress bar on stderr (only when it is a terminal)."""
    total = max(total, done, 1)
    filled = 30 * done // total
    click.echo(f"\r[{'#' * filled}{'.' * (30 - filled)}] {done}/{total} users", err=True, nl=False)
