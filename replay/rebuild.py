"""Rebuild a projection namespace from the log with the live worker's own fold."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import OffsetAndMetadata

from projections.keys import fence_field
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
    report: Callable[[Progress], None] = print_progress,
    report_every: float = 1.0,
) -> Progress:
    """Fold every source record into namespace `target` until the end offsets sampled now.

    Positions are committed to `group` after each batch is written, so an interrupted rebuild
    resumes where it stopped; what it re-reads falls under the fences and changes nothing.
    """
    topics = Topics(settings.topic_prefix)
    store = RedisStore(client)
    sink = DirectSink(store)
    config = FoldConfig(gap_ms=settings.gap_ms, retention_days=settings.retention_days)
    consumer = AIOKafkaConsumer(
        **client_options(settings),
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=settings.bulk_batch_size,
    )
    await consumer.start()
    progress = Progress(time.monotonic())
    await load_definitions(settings, store, target)
    try:
        tps = [
            TopicPartition(t, p)
            for t in topics.sources
            for p in sorted(consumer.partitions_for_topic(t) or ())
        ]
        if not tps:
            await consumer._client.force_metadata_update()  # first call on a cold client
            tps = [
                TopicPartition(t, p)
                for t in topics.sources
                for p in sorted(consumer.partitions_for_topic(t) or ())
            ]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        await _seek_start(consumer, tps, since_ms)
        last_report = 0.0
        while True:
            positions = {tp: await consumer.position(tp) for tp in tps}
            progress.lag = sum(max(0, ends[tp] - positions[tp]) for tp in tps)
            if time.monotonic() - last_report >= report_every or progress.lag == 0:
                report(progress)
                last_report = time.monotonic()
            if progress.lag == 0:
                return progress
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
    finally:
        await consumer.stop()


async def load_definitions(settings: Settings, store: RedisStore, target: str) -> int:
    """Store every segment definition of the compacted topic in `target` before any profile
    is folded there, so profiles are evaluated as they are built; returns how many."""
    topic = Topics(settings.topic_prefix).segments
    consumer = AIOKafkaConsumer(**client_options(settings), enable_auto_commit=False)
    await consumer.start()
    applied = 0
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        if not tps:
            await consumer._client.force_metadata_update()
            found = consumer.partitions_for_topic(topic) or ()
            tps = [TopicPartition(topic, p) for p in sorted(found)]
        if not tps:
            return 0
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        await consumer.seek_to_beginning(*tps)
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            batch = await consumer.getmany(timeout_ms=500)
            for tp, messages in batch.items():
                for m in messages:
                    try:
                        segment_id, segment = decode_definition(m.key, m.value)
                    except Rejected:
                        continue  # the live worker dead-lettered it
                    fence = fence_field(tp.topic, tp.partition)
                    now_ms = int(time.time() * 1000)
                    await apply_definition(
                        store, target, segment_id, segment, fence, m.offset, now_ms=now_ms
                    )
                    applied += 1
        return applied
    finally:
        await consumer.stop()


async def _seek_start(
    consumer: AIOKafkaConsumer, tps: list[TopicPartition], since_ms: int | None
) -> None:
    """Resume from the group's committed offsets; else from the beginning or from `since`."""
    fresh = []
    for tp in tps:
        committed = await consumer.committed(tp)
        if committed is None:
            fresh.append(tp)
        else:
            consumer.seek(tp, committed)
    if not fresh:
        return
    if since_ms is None:
        await consumer.seek_to_beginning(*fresh)
        return
    found = await consumer.offsets_for_times({tp: since_ms for tp in fresh})
    ends = await consumer.end_offsets(fresh)
    for tp in fresh:
        at = found.get(tp)
        consumer.seek(tp, at.offset if at is not None else ends[tp])
