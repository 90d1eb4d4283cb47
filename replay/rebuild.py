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
from projections.membership import apply_definition, tick
from projections.step import DirectSink, FoldConfig, apply_batch
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


async def rebuild(
    settings: Settings,
    client: Any,
    target: str,
    *,
    group: str,
    since_ms: int | None = None,
    handover: bool = False,
    report: Callable[[Progress], None] = print_progress,
    report_every: float = 1.0,
) -> Progress:
    """Fold every source record into namespace `target` with its own consumer group, until it
    has caught up with the log's end.

    Positions are committed to `group` after each batch is written, so an interrupted rebuild
    resumes where it stopped; what it re-reads falls under the fences and changes nothing.
    The end moves while records keep arriving: the rebuild reads to the end it sampled, then
    to a newer one, until what is left is less than a batch. With `handover` it then leaves
    in `target` the offset it read each partition to, for the live worker to apply what it
    took in meanwhile (streams/handover.py).

    `since_ms` leaves events before it out of the views (commands all count): every command
    is read, events from where their produce time may first reach it.
    """
    topics = Topics(settings.topic_prefix)
    store = RedisStore(client)
    sink = DirectSink(store)
    config = FoldConfig(
        gap_ms=settings.gap_ms, retention_days=settings.retention_days, since_ms=since_ms
    )
    consumer = AIOKafkaConsumer(
        **client_options(settings),
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=settings.bulk_batch_size,
    )
    await consumer.start()
    progress = Progress(time.monotonic())
    await store.mark(target)
    await namespaces.write_meta(client, target, namespaces.Meta(since=since_ms))
    await load_definitions(settings, store, target)
    try:
        tps = await _partitions(consumer, topics.sources)
        consumer.assign(tps)
        await _seek_start(consumer, tps, since_ms, topics, settings.max_future_hours)
        last_report = 0.0
        rounds = 0
        ends = await consumer.end_offsets(tps)
        while True:
            positions = {tp: await consumer.position(tp) for tp in tps}
            progress.lag = sum(max(0, ends[tp] - positions[tp]) for tp in tps)
            if progress.lag == 0:
                # caught up with the end sampled last: sample again, while records arrive
                newer = await consumer.end_offsets(tps)
                left = sum(max(0, newer[tp] - positions[tp]) for tp in tps)
                rounds += 1
                if left < settings.bulk_batch_size or rounds >= 10:
                    report(progress)
                    break
                ends = newer
                continue
            if time.monotonic() - last_report >= report_every:
                report(progress)
                last_report = time.monotonic()
            batch = await consumer.getmany(timeout_ms=500, max_records=settings.bulk_batch_size)
            messages = [m for ms in batch.values() for m in ms]
            if not messages:
                continue
            now_ms = int(time.time() * 1000)
            good, dead = triage(messages, topics, settings.limits, now_ms)
            progress.skipped += len(dead)
            if good:
                await apply_batch(store, sink, target, good, now_ms=now_ms, config=config)
                # no worker's clock serves a namespace under construction: run it here (members
                # of a company the batch changed are due at once)
                await tick(store, target, now_ms=int(time.time() * 1000))
            progress.done += len(messages)
            await consumer.commit(
                {tp: OffsetAndMetadata(ms[-1].offset + 1, "") for tp, ms in batch.items() if ms}
            )
        if handover:
            positions = {tp: await consumer.position(tp) for tp in tps}
            await client.hset(
                keys.handover(target),
                mapping={f"{tp.topic}:{tp.partition}": str(at) for tp, at in positions.items()},
            )
        # definitions that arrived while it ran (each id keeps its latest: any order is right)
        await load_definitions(settings, store, target)
        return progress
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
