"""The worker never acks a batch it did not apply: every failure is retried, or stops it.

Faust's `take_events` acks a batch in a `finally` when the loop body raises, and Faust
commits acked offsets: a step that failed with an error nobody caught would lose its
records. So an agent's body never lets one out. A failure that passes (Redis unreachable,
full at its `maxmemory`, read-only or reconfiguring during a failover, a cluster without a
quorum, a Kafka send that timed out, entities another writer kept changing) is retried until
it goes through; one that will not (a bug, a state the code cannot read, a refused
permission) stops the process at once with nothing more acked — as a `kill -9` would, which
the fences make harmless — and says why in the log:

  exit 4  Redis lost the projections: rebuild them with `profiles replay`
  exit 5  a failure the worker cannot get past; fix what the log says and start it again
  exit 6  the namespace was written in another state format: `profiles replay`
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn

import redis.exceptions as rx
from aiokafka.errors import KafkaConnectionError, KafkaError, KafkaTimeoutError

from projections.namespaces import OtherFormat, ProjectionsLost
from projections.step import Contended

log = logging.getLogger("profiles.worker")

EXIT_FAILED = 5
# A stopping worker finishes the batch in hand for at most this long, else leaves it unacked.
FINISH_SECONDS = 30.0

# Error replies of a Redis that will take the write later: at maxmemory, a replica promoted
# or not yet, a cluster resharding or without quorum, a script running long, a load.
_REPLIES = ("OOM", "READONLY", "CLUSTERDOWN", "TRYAGAIN", "MASTERDOWN", "LOADING", "BUSY")
_REDIS = (
    rx.TimeoutError,
    rx.BusyLoadingError,
    rx.ReadOnlyError,
    rx.OutOfMemoryError,
    rx.ClusterDownError,
    rx.MasterDownError,
    rx.TryAgainError,
    rx.SlotNotCoveredError,
    rx.MaxConnectionsError,
    rx.ClusterError,
)


class Again(Exception):
    """Do the batch again at once: the namespace it was written to moved under it."""


def transient(exc: BaseException) -> bool:
    """Whether retrying the same batch later can succeed."""
    if isinstance(exc, rx.AuthenticationError | rx.NoPermissionError):
        return False  # a ConnectionError / ResponseError, but retrying will not help
    if isinstance(exc, (rx.ConnectionError, *_REDIS, Contended)):
        return True
    if isinstance(exc, rx.ResponseError):
        return str(exc).startswith(_REPLIES)
    if isinstance(exc, KafkaTimeoutError | KafkaConnectionError):
        return True
    return isinstance(exc, KafkaError) and bool(exc.retriable)


def stop(code: int, message: str, exc: BaseException | None = None) -> NoReturn:
    """End the process now: nothing more is acked or committed."""
    log.critical("%s", message, exc_info=exc)
    logging.shutdown()
    os._exit(code)


async def until_applied(what: str, step: Callable[[], Awaitable[Any]]) -> None:
    """Run `step` until it succeeds; stop the worker on a failure that will not pass."""
    delay, failing_since, told = 0.25, 0.0, 0.0
    while True:
        try:
            await step()
        except Again:
            continue
        except (ProjectionsLost, OtherFormat) as exc:
            stop(exc.exit_code, str(exc))
        except Exception as exc:
            if not transient(exc):
                stop(
                    EXIT_FAILED,
                    f"{what} failed and cannot be retried, so the worker stops with its batch "
                    f"unacked (exit {EXIT_FAILED}): {type(exc).__name__}: {exc}",
                    exc,
                )
            now = time.monotonic()
            if not failing_since:
                failing_since = now
            if now - told >= 30:  # the first failure, then one line every 30 s
                told = now
                log.error(
                    "%s failed for %.0f s, retrying with the batch unacked: %s: %s",
                    what,
                    now - failing_since,
                    type(exc).__name__,
                    exc,
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
        else:
            if failing_since:
                log.warning("%s went through after %.1f s", what, time.monotonic() - failing_since)
            return


async def finish(batch: Awaitable[Any]) -> None:
    """Run one batch to its end even when the worker is asked to stop meanwhile: Faust acks
    the batch as soon as the agent is cancelled, so the agent waits for it (at most
    FINISH_SECONDS) before it lets the cancellation through — or stops the process first."""
    task = asyncio.ensure_future(batch)
    try:
        await asyncio.shield(task)
    except Exception as exc:  # a bug of this module: still nothing may be acked
        stop(EXIT_FAILED, f"a batch failed unexpectedly: {type(exc).__name__}: {exc}", exc)
    except asyncio.CancelledError:
        try:
            await asyncio.wait_for(asyncio.shield(task), FINISH_SECONDS)
        except BaseException as exc:
            stop(EXIT_FAILED, "stopping in the middle of a batch: left unacked", exc)
        raise
