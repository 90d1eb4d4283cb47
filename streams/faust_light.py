"""Faust without the per-message work the worker does not need (issue 18, item 2).

bench/faust_floor.py measures what Faust costs per message: a Faust agent that only decodes.
Before these it spent ~10 s CPU per 100,000 events, now ~3.8 s, where an aiokafka `getmany`
loop doing the same decoding spends ~1.1 s (README, "Benchmark"). What this module removes:

* `uvloop` (`use_uvloop`): the asyncio loop's own turns (Faust's main loop and its consumer
  thread's) were a large share; uvloop runs them in C.
* Faust's consumer awaited `wait_first(callback(message), suspend_flow.wait())` for every
  message: four tasks and an `asyncio.wait` per message, 40 % of what was left.
  `Consumer._drain_messages` runs the callback's first step inline instead; only a callback
  that has to wait (the stream's buffer full, the flow suspended by a rebalance) goes on
  under `wait_first` as before, so what is delivered, dropped and acked stays the same.
* The Monitor sensor's per-message bookkeeping (`QuietMonitor`): counters, timings and
  per-stream lookups for Faust's web views, which the worker does not serve.
* The serializer registry (`RawSchema`): keys and values are bytes ("raw"), so an Event gets
  the message's own key and value (and the Event class is looked up once, not per message).
* A fetch per arriving record at a trickle (`ConsumerThread`): the broker answers a fetch
  once 64 KiB are there or 100 ms have passed, not as soon as one record is.

Acks are untouched: each agent acks its batch after applying it (take_events), at
concurrency 1, and Faust commits acked offsets only.
"""

from __future__ import annotations

import asyncio
import logging
import types
from collections.abc import AsyncIterator, Coroutine, Generator
from time import monotonic
from typing import Any, cast

import faust
from faust.sensors import Monitor
from faust.serializers.schemas import Schema
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as faust_kafka
from faust.types import TP, AppT, EventT, Message, StreamT, TransportT
from mode import Service, ServiceT

log = logging.getLogger("profiles.worker")


def use_uvloop() -> bool:
    """Make uvloop the event loop of every loop made from now on (Faust's consumer thread
    too); call it before the App starts. Without uvloop installed, says so and keeps asyncio."""
    import mode.loop

    try:
        mode.loop.use("uvloop")
    except ImportError:
        log.warning("uvloop is not installed: the worker runs on asyncio's slower loop")
        return False
    return True


class QuietMonitor(Monitor):
    """Faust's Monitor without its per-message bookkeeping. The rest (rebalances, commits,
    sends) is kept, and so is the time a partition last had an event in, which Faust's check
    for stalled streams reads."""

    def on_message_in(self, tp: TP, offset: int, message: Message) -> None:
        pass

    def on_stream_event_in(
        self, tp: TP, offset: int, stream: StreamT, event: EventT
    ) -> dict[Any, Any] | None:
        self.stream_inbound_time[tp] = monotonic()
        return None

    def on_stream_event_out(
        self,
        tp: TP,
        offset: int,
        stream: StreamT,
        event: EventT,
        state: dict[Any, Any] | None = None,
    ) -> None:
        pass

    def on_message_out(self, tp: TP, offset: int, message: Message) -> None:
        pass

    def track_tp_end_offset(self, tp: TP, offset: int) -> None:
        pass


class RawSchema(Schema):
    """Bytes in, bytes out: what the "raw" serializer gives for bytes keys and values,
    without going through the serializer registry for each message."""

    def compile(self, app: AppT, **_ignored: Any) -> Any:
        event: Any = app.conf.Event  # what app.create_event looks up in the settings each time

        async def decode(message: Message, *, propagate: bool = False) -> EventT:
            return cast(EventT, event(app, message.key, message.value, message.headers, message))

        return decode


async def _rest(coro: Coroutine[Any, Any, Any], waiting: Any) -> Any:
    """The rest of `coro`, whose first step ran already and yielded `waiting`."""
    return await _resume(coro, waiting)


@types.coroutine
def _resume(coro: Coroutine[Any, Any, Any], waiting: Any) -> Generator[Any, Any, Any]:
    # What the task awaiting this would have done had it started `coro` itself: hand it what
    # coro waits for, then go on with coro (or throw into it what the task throws in here).
    while True:
        try:
            sent = yield waiting
        except GeneratorExit:
            coro.close()
            raise
        except BaseException as exc:  # a cancellation (or a throw), passed on to coro
            try:
                waiting = coro.throw(exc)
            except StopIteration as done:
                return done.value
        else:
            try:
                waiting = coro.send(sent)
            except StopIteration as done:
                return done.value


# A fetch request names every assigned partition (six source topics and the company deltas,
# each with all its partitions): at a trickle of a few hundred events a second, a request per
# arriving record cost the consumer thread more than the records did. The broker now answers
# once this much is there, or after this long (Faust asks for up to 1.5 s, at least 1 byte).
FETCH_MIN_BYTES = 64 * 1024
FETCH_MAX_WAIT_MS = 100


class ConsumerThread(faust_kafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: faust_kafka.Transport) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # Faust passes no fetch_min_bytes and a fixed fetch_max_wait_ms; aiokafka reads both
        # when it starts the consumer's fetcher.
        consumer._fetch_min_bytes = FETCH_MIN_BYTES
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS
        return consumer


class Consumer(faust_kafka.Consumer):
    # A copy of faust.transport.consumer.Consumer._drain_messages (faust-streaming 0.15.3;
    # tests/unit/test_faust_light.py notices when Faust's changes) but for the marked lines.
    def _new_consumer_thread(self) -> faust_kafka.AIOKafkaConsumerThread:
        return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def _drain_messages(self, fetcher: ServiceT) -> None:  # pragma: no cover
        # This is the background thread started by Fetcher, used to
        # constantly read messages using Consumer.getmany.
        # It takes Fetcher as argument, because we must be able to
        # stop it using `await Fetcher.stop()`.
        callback = self.callback
        getmany = self.getmany
        consumer_should_stop = cast(Service, self)._stopped.is_set
        fetcher_should_stop = cast(Service, fetcher)._stopped.is_set

        get_read_offset = self._read_offset.__getitem__
        set_read_offset = self._read_offset.__setitem__
        flag_consumer_fetching = CONSUMER_FETCHING
        set_flag = self.diag.set_flag
        unset_flag = self.diag.unset_flag
        commit_every = self._commit_every
        acks_enabled_for = self.app.topics.acks_enabled_for

        yield_every = 100
        num_since_yield = 0
        sleep = asyncio.sleep

        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                set_flag(flag_consumer_fetching)
                ait = cast(AsyncIterator, getmany(timeout=1.0))

                # Sleeping because sometimes getmany is called in a loop
                # never releasing to the event loop
                await self.sleep(0)
                if not self.should_stop:
                    async for tp, message in ait:
                        num_since_yield += 1
                        if num_since_yield > yield_every:
                            await sleep(0)
                            num_since_yield = 0

                        offset = message.offset
                        r_offset = get_read_offset(tp)
                        if r_offset is None or offset >= r_offset:
                            gap = offset - (r_offset or 0)
                            # We have a gap in income messages
                            if gap > 1 and r_offset:
                                acks_enabled = acks_enabled_for(message.topic)
                                if acks_enabled:
                                    await self._add_gap(tp, r_offset + 1, offset)
                            if commit_every is not None:  # noqa: SIM102
                                if self._n_acked >= commit_every:
                                    self._n_acked = 0
                                    await self.commit()
                            # --- changed: was `await self.wait_first(callback(message),
                            # self.suspend_flow.wait())`, four tasks per message. A callback
                            # that finishes without waiting could not have been overtaken
                            # by suspend_flow; only one that waits races it, as before.
                            delivery = cast(Coroutine[Any, Any, Any], callback(message))
                            try:
                                waiting = delivery.send(None)
                            except StopIteration:
                                pass
                            else:
                                await self.wait_first(
                                    _rest(delivery, waiting), self.suspend_flow.wait()
                                )
                            # --- end of the change
                            set_read_offset(tp, offset)
                        else:
                            self.log.dev(
                                "DROPPED MESSAGE ROFF %r: k=%r v=%r",
                                offset,
                                message.key,
                                message.value,
                            )
                    unset_flag(flag_consumer_fetching)

        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                # we're already stopping so ignore
                self.log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                # we're already stopping so ignore
                self.log.info("Consumer shutting down for user cancel.")
                return
            raise
        except Exception as exc:
            self.log.exception("Drain messages raised: %r", exc)
            raise
        finally:
            unset_flag(flag_consumer_fetching)


class Transport(faust_kafka.Transport):
    Consumer = Consumer


class App(faust.App):
    """faust.App whose Kafka consumer is `Consumer` above (the broker URLs are kafka://)."""

    def _new_transport(self) -> TransportT:
        return cast(TransportT, Transport(self.conf.broker_consumer, self))
