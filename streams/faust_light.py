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
* Faust's terminal spinner (`Worker`): it put the root logger at DEBUG, so every debug call of
  Faust and aiokafka made a record, and a log file kept only its cursor codes.

Acks are untouched: each agent acks its batch after applying it (take_events), at
concurrency 1, and Faust commits acked offsets only.
"""

from __future__ import annotations

import asyncio
import logging
import sys
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
from mode.utils.logging import DEFAULT_FORMATTERS, level_number

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
    def _new_consumer_thread(self) -> faust_kafka.AIOKafkaConsumerThread:
        return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    def lags(self) -> dict[tuple[str, int], int | None]:
        """Each assigned partition's records not yet committed, from what the consumer knows
        without asking the broker: the end offset its last fetch was told, minus the committed
        offset (before a first commit, the offset after the last one read). None: not known
        yet. Empty while the consumer is not running."""
        try:
            assigned = self.assignment()
        except Exception:  # not started yet, or stopping: the next sample will tell
            return {}
        lags: dict[tuple[str, int], int | None] = {}
        for tp in assigned:
            try:
                end = self.highwater(tp)
            except (AssertionError, AttributeError, KeyError):  # revoked meanwhile
                continue
            done = self._committed_offset.get(tp)
            if done is None:
                read = self._read_offset.get(tp)
                done = None if read is None else read + 1
            if end is not None and done is not None:
                lags[tp] = max(0, end - done)
            else:
                lags[tp] = 0 if end == 0 else None  # an empty partition has no lag
        return lags

    # A copy of faust.transport.consumer.Consumer._drain_messages (faust-streaming 0.15.3;
    # tests/unit/test_faust_light.py notices when Faust's changes) but for the marked lines.
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


class Worker(faust.Worker):
    """faust.Worker whose log a file can hold: no spinner, colours on a terminal only, and
    the worker's own lines (the `profiles` loggers: progress, dead letters, failures) at
    info or below whatever `loglevel` says of Faust's and the libraries'."""

    def __init__(self, app: AppT, *, loglevel: str) -> None:
        super().__init__(
            app,
            loglevel=loglevel,
            quiet=True,
            logging_config=logging_config(loglevel, tty=sys.stdout.isatty()),
        )
        # Faust's spinner turns on at WARN and above: it hid the cursor of a file too, and
        # moved the root logger to DEBUG to spin at every record.
        self.spinner = None

    def on_worker_shutdown(self) -> None:
        super().on_worker_shutdown()
        log.info("worker stopped")  # its services have; what the signal asked is done


def logging_config(loglevel: str, *, tty: bool) -> dict[str, Any]:
    """A dictConfig for the worker: one handler on stdout, plain lines unless a terminal."""
    level = level_number(loglevel)
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "plain": {"format": "[%(asctime)s] [%(process)s] [%(levelname)s] %(message)s"},
            "colored": DEFAULT_FORMATTERS["colored"],  # Faust's own, on a terminal
        },
        "handlers": {
            "stdout": {
                "class": "logging.StreamHandler",
                "formatter": "colored" if tty else "plain",
                "stream": "ext://sys.stdout",
            }
        },
        "root": {"level": level, "handlers": ["stdout"]},
        "loggers": {"profiles": {"level": min(level, logging.INFO)}},
    }
