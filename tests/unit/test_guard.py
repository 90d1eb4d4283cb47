"""Which failures the worker retries with its batch unacked, and which stop it (guard.py)."""

from __future__ import annotations

import pytest
import redis.exceptions as rx
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    NotLeaderForPartitionError,
    RequestTimedOutError,
)

from projections.fold import Unreadable
from projections.step import Contended
from streams.guard import transient


@pytest.mark.parametrize(
    "exc",
    [
        rx.ConnectionError("Connection refused"),
        rx.TimeoutError("Timeout reading from socket"),
        rx.OutOfMemoryError("command not allowed when used memory > 'maxmemory'"),
        rx.ResponseError("OOM command not allowed when used memory > 'maxmemory'."),
        rx.ReadOnlyError("You can't write against a read only replica."),
        rx.ResponseError("READONLY You can't write against a read only replica."),
        rx.ClusterDownError("The cluster is down"),
        rx.ResponseError("CLUSTERDOWN The cluster is down"),
        rx.TryAgainError("Multiple keys request during rehashing of slot"),
        rx.MasterDownError("Link with MASTER is down"),
        rx.BusyLoadingError("Redis is loading the dataset in memory"),
        rx.ResponseError("BUSY Redis is busy running a script."),
        rx.SlotNotCoveredError("slot not covered"),
        KafkaTimeoutError(),
        KafkaConnectionError("Unable to bootstrap"),
        NotLeaderForPartitionError(),
        RequestTimedOutError(),
        Contended("3 users kept changing under this writer"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_what_passes_is_retried(exc: BaseException) -> None:
    assert transient(exc)


@pytest.mark.parametrize(
    "exc",
    [
        rx.AuthenticationError("invalid username-password pair"),
        rx.NoPermissionError("this user has no permissions to run the 'hset' command"),
        rx.ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value"),
        rx.DataError("Invalid input"),
        MessageSizeTooLargeError(),
        Unreadable("a user state this version cannot read"),
        RuntimeError("a bug"),
        KeyError("h"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_what_will_not_pass_stops_the_worker(exc: BaseException) -> None:
    assert not transient(exc)
