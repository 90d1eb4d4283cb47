"""streams/faust_light.py: the same deliveries, acks and events as Faust's own, for less."""

from __future__ import annotations

import asyncio
import inspect
import re
from collections import defaultdict
from collections.abc import Awaitable, Callable
from types import SimpleNamespace
from typing import Any

import faust
import pytest
from faust.serializers.schemas import Schema
from faust.transport import consumer as faust_consumer
from faust.types import TP
from faust.types.tuples import Message
from mode import Service

from streams import faust_light
from streams.app import app_options, build_app
from streams.settings import Settings

ORIGINAL_CALL = """\
await self.wait_first(
    callback(message), self.suspend_flow.wait()
)
"""


def test_the_consumer_is_fausts_but_for_the_marked_lines() -> None:
    """Our _drain_messages is a copy of Faust's: when a Faust upgrade changes theirs, this
    fails, and the copy is made again from the new one."""
    ours = inspect.getsource(faust_light.Consumer._drain_messages)
    theirs = inspect.getsource(faust_consumer.Consumer._drain_messages)
    marked = re.search(r"\n( *)# --- changed:.*?# --- end of the change\n", ours, re.S)
    assert marked is not None
    indent = marked.group(1)
    restored = ours.replace(
        marked.group(0)[1:], "".join(indent + line + "\n" for line in ORIGINAL_CALL.splitlines())
    ).replace("  # noqa: SIM102", "")
    assert restored == theirs


class FakeConsumer:
    """What _drain_messages touches of a Faust consumer; getmany hands out `batches`."""

    consumer_stopped_errors = (ConnectionAbortedError,)

    def __init__(self, callback: Callable[[Any], Awaitable[None]], batches: list[list[Any]]):
        self.callback = callback
        self.batches = batches
        self.loop = asyncio.get_running_loop()
        self._stopped, self._crashed = asyncio.Event(), asyncio.Event()
        self.suspend_flow = asyncio.Event()
        self._read_offset: dict[Any, int | None] = defaultdict(lambda: None)
        self.diag = SimpleNamespace(set_flag=lambda _f: None, unset_flag=lambda _f: None)
        self._commit_every = None
        self._n_acked = 0
        self.app = SimpleNamespace(topics=SimpleNamespace(acks_enabled_for=lambda _t: True))
        self.transport = SimpleNamespace(app=SimpleNamespace(should_stop=False))
        self.log = SimpleNamespace(dev=print, info=print, exception=print)
        self.should_stop = False
        self.raced = 0  # wait_first calls: deliveries raced against a suspended flow

    async def getmany(self, timeout: float) -> Any:
        if not self.batches:
            self._stopped.set()
            return
        for message in self.batches.pop(0):
            yield ("t", 0), message

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    async def wait_first(self, *coros: Any, timeout: Any = None) -> Any:
        self.raced += 1
        return await Service.wait_first(self, *coros, timeout=timeout)  # type: ignore[arg-type]


DRAINS = {
    "faust": faust_consumer.Consumer._drain_messages,
    "light": faust_light.Consumer._drain_messages,
}


def drain(
    which: str, callback: Callable[[Any], Awaitable[None]], setup: Callable[[Any], None]
) -> FakeConsumer:
    async def run() -> FakeConsumer:
        batches = [[SimpleNamespace(topic="t", partition=0, offset=i) for i in range(4)]]
        fake = FakeConsumer(callback, batches)
        setup(fake)
        fetcher = SimpleNamespace(_stopped=asyncio.Event())
        await asyncio.wait_for(DRAINS[which](fake, fetcher), 5)  # type: ignore[arg-type]
        return fake

    return asyncio.run(run())


@pytest.mark.parametrize("which", sorted(DRAINS))
def test_a_delivery_that_needs_no_wait_goes_straight_in(which: str) -> None:
    delivered: list[int] = []

    async def deliver(m: Any) -> None:
        delivered.append(m.offset)

    fake = drain(which, deliver, lambda _fake: None)
    assert delivered == [0, 1, 2, 3]
    assert fake._read_offset[("t", 0)] == 3
    assert fake.raced == (4 if which == "faust" else 0)


@pytest.mark.parametrize("which", sorted(DRAINS))
def test_a_delivery_that_waits_is_waited_for(which: str) -> None:
    delivered: list[int] = []
    gate: list[asyncio.Future[None]] = []

    async def deliver(m: Any) -> None:
        if m.offset == 1:  # the stream's buffer is full: wait for room
            await gate[0]
        delivered.append(m.offset)

    def setup(fake: FakeConsumer) -> None:
        gate.append(fake.loop.create_future())
        fake.loop.call_later(0.05, gate[0].set_result, None)

    fake = drain(which, deliver, setup)
    assert delivered == [0, 1, 2, 3]
    assert fake.raced == (4 if which == "faust" else 1)


@pytest.mark.parametrize("which", sorted(DRAINS))
def test_a_waiting_delivery_is_dropped_when_the_flow_is_suspended(which: str) -> None:
    """A rebalance suspends the flow: the delivery waiting for room is cancelled (its message
    is neither delivered nor acked), as Faust does."""
    delivered: list[int] = []
    cancelled: list[int] = []

    async def deliver(m: Any) -> None:
        try:
            if m.offset == 1:
                await asyncio.get_running_loop().create_future()  # never any room
        except asyncio.CancelledError:
            cancelled.append(m.offset)
            raise
        delivered.append(m.offset)

    def setup(fake: FakeConsumer) -> None:
        fake.loop.call_later(0.05, fake.suspend_flow.set)

    fake = drain(which, deliver, setup)
    assert (delivered, cancelled) == ([0, 2, 3], [1])
    assert fake._read_offset[("t", 0)] == 3


@pytest.mark.parametrize("which", sorted(DRAINS))
@pytest.mark.parametrize("waits", [False, True], ids=["at-once", "after-waiting"])
def test_a_failing_delivery_stops_the_drain(which: str, waits: bool) -> None:
    async def deliver(m: Any) -> None:
        if waits:
            await asyncio.sleep(0.01)
        if m.offset == 2:
            raise RuntimeError("a bug")

    with pytest.raises(RuntimeError, match="a bug"):
        drain(which, deliver, lambda _fake: None)


def message(key: bytes | None, value: bytes | None) -> Message:
    return Message("t", 0, 7, 0.0, 0, [], key, value, None)


@pytest.mark.parametrize(
    ("key", "value"), [(b"k", b"v"), (None, b"\x80\x00"), (b"k", None), (b"", b"")]
)
def test_raw_schema_makes_the_events_fausts_raw_schema_makes(
    key: bytes | None, value: bytes | None
) -> None:
    app = faust.App("test-raw-schema", key_serializer="raw", value_serializer="raw")
    theirs = Schema(key_type=bytes, value_type=bytes).compile(app, default_propagate=True)
    ours = faust_light.RawSchema(key_type=bytes, value_type=bytes).compile(app)
    m = message(key, value)

    async def both() -> tuple[Any, Any]:
        return await theirs(m), await ours(m)

    a, b = asyncio.run(both())
    assert (type(a), a.key, a.value, a.headers, a.message) == (
        type(b),
        b.key,
        b.value,
        b.headers,
        b.message,
    )


def test_the_worker_app_uses_the_light_pieces() -> None:
    cfg = Settings(topic_prefix="unit.", group_id="unit-light")
    app = build_app(cfg)
    assert isinstance(app, faust_light.App)
    assert app.conf.Monitor is faust_light.QuietMonitor
    assert app.conf.Schema is faust_light.RawSchema
    assert isinstance(app.transport, faust_light.Transport)
    assert app.transport.Consumer is faust_light.Consumer
    assert faust_light.Consumer._new_consumer_thread is not None
    assert app_options(cfg)["broker_max_poll_records"] <= app.conf.stream_buffer_maxsize / 10


def test_the_quiet_monitor_keeps_what_the_stall_check_reads() -> None:
    monitor = faust_light.QuietMonitor()
    tp = TP("t", 0)
    assert monitor.on_stream_event_in(tp, 1, None, None) is None  # type: ignore[arg-type]
    assert tp in monitor.stream_inbound_time
    assert monitor.events_total == 0 and monitor.messages_received_total == 0
