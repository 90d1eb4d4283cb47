"""The `profiles` command: the group, and `run`, its entry point."""

from __future__ import annotations

import logging
import os
import signal
import sys
from typing import Any, NoReturn

import click
import redis
from aiokafka.errors import KafkaConnectionError, KafkaError

from cli import operate, pipeline, segments, views
from cli.common import EXIT_USAGE, fail, kafka_bootstrap
from streams.kafka import ACL_REFUSALS, LOGIN_REFUSALS, KafkaSecurityError

# Long-running services: a broken pipe there is a network failure, never the end of output.
SERVICES = ("worker", "serve")


class _Profiles(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            if ctx.invoked_subcommand in SERVICES:
                raise
            _closed_pipe()


def _closed_pipe() -> NoReturn:
    """Whoever read the output went away (`profiles users APP | head -3`): end quietly, as
    Unix tools do, by SIGPIPE (the shell says 141)."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing left to flush
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGPIPE)
    sys.exit(128 + signal.SIGPIPE)  # not reached


@click.group(cls=_Profiles)
def main() -> None:
    """Live user and company profiles from product events (Kafka -> Faust -> Redis)."""


for command in (
    # the pipeline
    pipeline.worker,
    pipeline.publish,
    pipeline.status,
    pipeline.topics,
    pipeline.wait,
    pipeline.generate,
    pipeline.schemas,
    pipeline.serve,
    # profile views
    views.user,
    views.sessions,
    views.sentiment,
    views.engagement,
    views.company,
    views.company_users,
    views.users,
    # operators
    operate.command,
    operate.merge,
    operate.export,
    operate.dlq,
    operate.replay_command,
    operate.purge_command,
    operate.acl,
    operate.kafka_acl,
    segments.segments,
):
    main.add_command(command)


def run() -> None:
    """Entry point: known failures are one line and a non-zero exit, never a traceback."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("aiokafka").setLevel(logging.ERROR)  # retries it recovers from itself
    logging.getLogger("aiokafka").addFilter(kafka_bootstrap)
    try:
        code = main(standalone_mode=False)
    except click.UsageError as exc:
        _usage(exc)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.Abort:
        fail("aborted")
    except KafkaConnectionError as exc:
        if kafka_bootstrap.last is None:
            fail(f"cannot reach a service: {exc}", 2)
        server, why = kafka_bootstrap.last
        if isinstance(why, LOGIN_REFUSALS):
            fail(f"kafka refused the login: {why}", 2)
        fail(f"cannot reach a service: kafka at {server}: {why}", 2)
    except KafkaSecurityError as exc:
        fail(f"kafka: {exc}", 2)
    except ACL_REFUSALS as exc:
        fail(f"kafka: the ACLs of this login do not allow it: {exc}", 2)
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
    sys.exit(code if isinstance(code, int) else 0)  # an int: --help's or ctx.exit()'s


def _usage(exc: click.UsageError) -> NoReturn:
    """A bad command line in one line (click prints a usage block), exit 64."""
    if isinstance(exc, click.exceptions.NoArgsIsHelpError):  # `profiles`, `profiles dlq`
        click.echo(exc.ctx.get_help() if exc.ctx else "", err=True)
        sys.exit(EXIT_USAGE)
    path = exc.ctx.command_path if exc.ctx else "profiles"
    message = " ".join(exc.format_message().split())
    click.echo(f"{path}: bad parameter: {message} (see '{path} --help')", err=True)
    sys.exit(EXIT_USAGE)
