"""Rebuild a projection namespace from the log with the live worker's own fold."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import OffsetAndMetadata

from projections import keys, namespaces
from projections.company_step import DirectSink
from projections.identity_step import DirectMailer
from projections.membership import apply_definition, tick
from projections.step import FoldConfig, apply_batch
from projections.store import RedisStore
from schemas.codec import Rejected
from streams.definitions import decode_definition
from streams.ingest import triage
from streams.kafka import client_options
from streams.settings import Settings
from streams.topics import Topics


@dataclass
class Progress:
    started: float
    done: int = 0
    skipped: int = 0  # bad records: the live worker dead-lettered them already
    lag: int = 0
    removed: int = 0  # keys of the namespace a flip retired

    def line(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        rate = self.done / elapsed
        eta = f"{self.lag / rate:,.0f} s" if rate > 0 else "?"
        return (
            f"replayed {self.done:,} records  {rate:,.0f}/s  lag {self.lag:,}  ETA {eta}"
            f"{f'  skipped {self.skipped:,} bad' if self.skipped else ''}"
        )


def print_progress(p: Progress) -> None:
    end = "\r" if sys.stderr.isatty() else "\n"
    print(p.line(), file=sys.stderr, end=end, flush=True)


# Advance handover entries that are still there (the live worker removes an entry once it
# has handed its partition over; it must not come back). ARGV: field, offset, field, offset…
_ADVANCE = """
for i = 1, #ARGV, 2 do
  local at = redis.call('HGET', KEYS[1], ARGV[i])
  if at and tonumber(at) < tonumber(ARGV[i + 1]) then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  end
end
return 0
"""


# A rebuild folds this many bulk batches in one step (PROFILES_BULK_BATCH_SIZE records each).
REPLAY_BATCHES = 5


class _Reader:
    """The rebuild's consumer on the source topics, in its own group, and the fold."""

    def __init__(self, settings: Settings, client: Any, target: str, since_ms: int | None) -> None:
        self.settings = settings
        self.client = client
        self.target = target
        self.since_ms = since_ms
        self.topics = Topics(settings.topic_prefix)
        self.store = RedisStore(client)
        self.sink = DirectSink(self.store)
        self.config = FoldConfig(
            gap_ms=settings.gap_ms, retention_days=settings.retention_days, since_ms=since_ms
        )
        self.mailer = DirectMailer(self.store, self.sink, target, self.config)
        self.progress = Progress(time.monotonic())
        self.tps: list[TopicPartition] = []
        self.last_report = 0.0

    async def read(
        self,
        consumer: AIOKafkaConsumer,
        report: Callable[[Progress], None],
        report_every: float,
        rounds: int,
    ) -> None:
        """Fold records until the end sampled now, a partition number at a time; then, while
        records keep arriving, up to `rounds` times more to a newer end, until less than a
        batch is left.

        A user's records are in the same partition number of every source topic (one key,
        one partition count), so reading one number of every topic at once hands each user
        step many of that user's records: a step costs what it touches, and touching a day
        for twenty records costs hardly more than for one."""
        settings, progress, tps = self.settings, self.progress, self.tps
        ends = await consumer.end_offsets(tps)
        self.last_report = 0.0
        numbers = sorted({tp.partition for tp in tps})
        by_number = [[tp for tp in tps if tp.partition == n] for n in numbers]
        consumer.pause(*tps)
        consumer.resume(*by_number[0])
        for i, mine in enumerate(by_number):
            then = by_number[i + 1] if i + 1 < len(by_number) else []
            await self._read_to(consumer, mine, ends, report, report_every, then=then)
        consumer.resume(*tps)
        while True:
            newer = await consumer.end_offsets(tps)
            positions = {tp: await consumer.position(tp) for tp in tps}
            left = sum(max(0, newer[tp] - positions[tp]) for tp in tps)
            rounds -= 1
            if left == 0 or left < settings.bulk_batch_size or rounds < 0:
                progress.lag = left
                report(progress)
                return
            await self._read_to(consumer, tps, newer, report, report_every)

    async def _read_to(
        self,
        consumer: AIOKafkaConsumer,
        tps: list[TopicPartition],
        ends: dict[TopicPartition, int],
        report: Callable[[Progress], None],
        report_every: float,
        then: list[TopicPartition] | None = None,
    ) -> None:
        """Fold the records of `tps` up to `ends`, REPLAY_BATCHES bulk batches at a time.
        Once every record of `tps` is fetched, `tps` pause and `then` resume: the consumer
        fetches the next partitions while this fold runs."""
        settings, progress = self.settings, self.progress
        while True:
            positions = {tp: await consumer.position(tp) for tp in self.tps}
            progress.lag = sum(max(0, ends[tp] - positions[tp]) for tp in self.tps)
            if all(positions[tp] >= ends[tp] for tp in tps):
                if then is not None:  # a partition number without records hands over too
                    consumer.pause(*tps)
                    consumer.resume(*then)
                return
            if time.monotonic() - self.last_report >= report_every:
                report(progress)
                self.last_report = time.monotonic()
            messages: list[Any] = []
            last: dict[TopicPartition, int] = {}
            for _ in range(REPLAY_BATCHES):
                batch = await consumer.getmany(
                    timeout_ms=200 if messages else 500, max_records=settings.bulk_batch_size
                )
                for tp, ms in batch.items():
                    if ms:
                        messages += ms
                        last[tp] = ms[-1].offset
                if not batch or all([await consumer.position(tp) >= ends[tp] for tp in tps]):
                    break
            if then is not None and all([await consumer.position(tp) >= ends[tp] for tp in tps]):
                consumer.pause(*tps)
                consumer.resume(*then)
            if not messages:
                continue
            now_ms = int(time.time() * 1000)
            good, dead = triage(messages, self.topics, settings.limits, now_ms)
            progress.skipped += len(dead)
            if good:
                await apply_batch(
                    self.store,
                    self.sink,
                    self.target,
                    good,
                    now_ms=now_ms,
                    config=self.config,
                    mailer=self.mailer,
                )
                await self.mailer.drain(now_ms)  # merges (§7), before the offsets commit
                # no worker's clock serves a namespace under construction: run it here
                # (members of a company the batch changed are due at once)
                await tick(self.store, self.target, now_ms=int(time.time() * 1000))
            progress.done += len(messages)
            await consumer.commit({tp: OffsetAndMetadata(o + 1, "") for tp, o in last.items()})

    async def positions(self, consumer: AIOKafkaConsumer) -> dict[str, str]:
        return {f"{tp.topic}:{tp.partition}": str(await consumer.position(tp)) for tp in self.tps}

    async def consumer(self, group: str) -> AIOKafkaConsumer:
        consumer = AIOKafkaConsumer(
            **client_options(self.settings),
            group_id=group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=self.settings.bulk_batch_size,
        )
        await consumer.start()
        self.tps = await _partitions(consumer, self.topics.sources)
        consumer.assign(self.tps)
        return consumer


async def rebuild(
    settings: Settings,
    client: Any,
    target: str,
    *,
    group: str,
    since_ms: int | None = None,
    handover: bool = False,
    report: Callable[[Progress], None] = print_progress,
    report_every: float | None = None,
) -> Progress:
    """Fold every source record into namespace `target` with its own consumer group, until it
    has caught up with the log's end.

    Positions are committed to `group` after each batch is written, so an interrupted rebuild
    resumes where it stopped; what it re-reads falls under the fences and changes nothing.
    The end moves while records keep arriving: the rebuild reads to the end it sampled, then
    to a newer one, until what is left is less than a batch. With `handover` it then leaves
    in `target` the offset it read each partition to, for the live worker to skip what is
    below and apply what it took in beyond (streams/handover.py).

    `since_ms` leaves events before it out of the views (commands all count): every command
    is read, events from where their produce time may first reach it.
    """
    reader = _Reader(settings, client, target, since_ms)
    await reader.store.mark(target)
    await namespaces.write_meta(client, target, namespaces.Meta(since=since_ms))
    await load_definitions(settings, reader.store, target)
    consumer = await reader.consumer(group)
    try:
        await _seek_start(consumer, reader.tps, since_ms, reader.topics, settings.max_future_hours)
        if report_every is None:  # a terminal's line each second; a log's every ten
            report_every = 1.0 if sys.stderr.isatty() else 10.0
        await reader.read(consumer, report, report_every, rounds=10)
        if handover:
            await client.hset(keys.handover(target), mapping=await reader.positions(consumer))
        # definitions that arrived while it ran (each id keeps its latest: any order is right)
        await load_definitions(settings, reader.store, target)
        return reader.progress
    finally:
        await consumer.stop()


async def catch_up(
    settings: Settings,
    client: Any,
    target: str,
    *,
    group: str,
    since_ms: int | None,
    report: Callable[[Progress], None] = print_progress,
) -> Progress:
    """After the flip, once nothing can write the old namespace any more: fold what arrived
    since the rebuild stopped, to the end sampled now — past everything the live worker ever
    applied to the old namespace — and advance the handover entries still there, so a
    partition that gets no new record is complete too."""
    reader = _Reader(settings, client, target, since_ms)
    consumer = await reader.consumer(group)
    try:
        for tp in reader.tps:  # the rebuild committed where it stopped
            committed = await consumer.committed(tp)
            if committed is None:
                await consumer.seek_to_beginning(tp)
            else:
                consumer.seek(tp, committed)
        await reader.read(consumer, report, 1.0, rounds=0)
        advance = client.register_script(_ADVANCE)
        flat = [x for pair in (await reader.positions(consumer)).items() for x in pair]
        await advance(keys=[keys.handover(target)], args=flat)
        return reader.progress
    finally:
        await consumer.stop()


async def _partitions(consumer: AIOKafkaConsumer, names: list[str]) -> list[TopicPartition]:
    found = [
        TopicPartition(t, p) for t in names for p in sorted(consumer.partitions_for_topic(t) or ())
    ]
    if not found:
        await consumer._client.force_metadata_update()  # first call on a cold client
        found = [
            TopicPartition(t, p)
            for t in names
            for p in sorted(consumer.partitions_for_topic(t) or ())
        ]
    return found


async def load_definitions(settings: Settings, store: RedisStore, target: str) -> int:
    """Store every segment definition of the compacted topic in `target` (profiles folded
    afterwards are evaluated as they are built); returns how many were read."""
    topic = Topics(settings.topic_prefix).segments
    consumer = AIOKafkaConsumer(**client_options(settings), enable_auto_commit=False)
    await consumer.start()
    applied = 0
    try:
        tps = await _partitions(consumer, [topic])
        if not tps:
            return 0
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        await consumer.seek_to_beginning(*tps)
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            batch = await consumer.getmany(timeout_ms=500)
            for messages in batch.values():
                for m in messages:
                    try:
                        segment_id, segment = decode_definition(m.key, m.value)
                    except Rejected:
                        continue  # the live worker dead-lettered it
                    now_ms = int(time.time() * 1000)
                    await apply_definition(
                        store, target, segment_id, segment, m.offset, now_ms=now_ms
                    )
                    applied += 1
        return applied
    finally:
        await consumer.stop()


async def _seek_start(
    consumer: AIOKafkaConsumer,
    tps: list[TopicPartition],
    since_ms: int | None,
    topics: Topics,
    future_hours: int,
) -> None:
    """Resume from the group's committed offsets; else from the beginning — or, `since`, the
    events from the first offset whose produce time may carry an event at or after it (an
    event is accepted up to `future_hours` ahead of its produce time), commands from the
    beginning."""
    fresh = []
    for tp in tps:
        committed = await consumer.committed(tp)
        if committed is None:
            fresh.append(tp)
        else:
            consumer.seek(tp, committed)
    commands = topics.for_type("command")
    start = [tp for tp in fresh if since_ms is None or tp.topic == commands]
    if start:
        await consumer.seek_to_beginning(*start)
    later = [tp for tp in fresh if tp not in start]
    if not later:
        return
    assert since_ms is not None
    at = since_ms - future_hours * 3_600_000
    found = await consumer.offsets_for_times({tp: at for tp in later})
    ends = await consumer.end_offsets(later)
    for tp in later:
        offset = found.get(tp)
        consumer.seek(tp, offset.offset if offset is not None else ends[tp])
