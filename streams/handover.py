"""The live worker's side of a replay's flip: what it applied elsewhere comes to the new namespace.

A replay builds its namespace on its own (its own consumer group, fences and reads) while
the live worker writes only the current one. When it flips, it leaves in the new namespace
the offset its rebuild read each source partition to (keys.handover), having applied every
record below it. A live batch's records below that offset are in the new namespace already
and are skipped (a live worker that was behind the rebuild does not fold them again). A
batch that starts above it follows records the live worker applied to the old namespace
only: before it is written, those records are read again from Kafka and applied (the gap).
Once a batch reaches the offset, the partition's entry goes, and it costs nothing more.
The replay, for its part, goes on reading after the flip and advances the entries still
there (replay/flip.py), so a partition that gets no new record is complete too.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from projections import keys
from projections.identity_step import DirectMailer
from projections.step import FoldConfig, Sink, apply_batch
from projections.store import Store
from streams.ingest import triage
from streams.kafka import client_options
from streams.settings import Settings
from streams.topics import Topics

log = logging.getLogger("profiles.worker")


def plan(
    covered: dict[str, int], spans: dict[tuple[str, int], tuple[int, int]]
) -> tuple[dict[str, tuple[int, int]], dict[tuple[str, int], int], list[str]]:
    """Pure: for a batch's partitions (first and last offset) against the handover entries,
    (the gaps [from, to) to apply first, the offset below which each partition's records
    are skipped, the entries this batch completes)."""
    fills, skip, done = {}, {}, []
    for (topic, partition), (first, last) in spans.items():
        name = f"{topic}:{partition}"
        if name not in covered:
            continue
        at = covered[name]
        if first > at:
            fills[name] = (at, first)
        else:
            skip[(topic, partition)] = at
        if last + 1 >= at:
            done.append(name)
    return fills, skip, done


class Handover:
    """The entries of every namespace this worker has written, cached: they only ever go."""

    def __init__(self, settings: Settings, client: Any, store: Store, sink: Sink) -> None:
        self._settings = settings
        self._client = client
        self._store = store
        self._sink = sink
        self._entries: dict[str, dict[str, int]] = {}

    async def before(
        self, namespace: str, messages: Iterable[Any], config: FoldConfig
    ) -> dict[tuple[str, int], int]:
        """Apply to `namespace` what its rebuild did not read and the batch does not hold;
        returns, per partition, the offset below which the batch's records are there already."""
        entries = self._entries.get(namespace)
        if entries is None:
            raw = await self._client.hgetall(keys.handover(namespace))
            entries = {k.decode(): int(v) for k, v in raw.items()}
            self._entries[namespace] = entries
        if not entries:
            return {}
        spans: dict[tuple[str, int], tuple[int, int]] = {}
        for m in messages:
            tp = (m.topic, m.partition)
            first, last = spans.get(tp, (m.offset, m.offset))
            spans[tp] = (min(first, m.offset), max(last, m.offset))
        names = [f"{t}:{p}" for t, p in spans if f"{t}:{p}" in entries]
        if not names:
            return {}
        # another worker (or the replay) may have moved an entry since it was cached
        found = await self._client.hmget(keys.handover(namespace), names)
        covered = {n: int(v) for n, v in zip(names, found, strict=True) if v is not None}
        for name in set(names) - set(covered):
            entries.pop(name, None)
        fills, skip, done = plan(covered, spans)
        for name, (start, end) in fills.items():
            await self._fill(namespace, name, start, end, config)
        if done:
            await self._client.hdel(keys.handover(namespace), *done)
            for name in done:
                entries.pop(name, None)
        return skip

    async def _fill(
        self, namespace: str, name: str, start: int, end: int, config: FoldConfig
    ) -> None:
        topic, _, partition = name.rpartition(":")
        tp = TopicPartition(topic, int(partition))
        settings = self._settings
        consumer = AIOKafkaConsumer(**client_options(settings), enable_auto_commit=False)
        await consumer.start()
        applied = 0
        try:
            consumer.assign([tp])
            consumer.seek(tp, start)
            while await consumer.position(tp) < end:
                found = await consumer.getmany(tp, timeout_ms=1000, max_records=settings.batch_size)
                messages = [m for m in found.get(tp, []) if m.offset < end]
                if not messages:
                    continue
                now_ms = int(time.time() * 1000)
                # the bad ones were dead-lettered when this worker first read them
                good, _dead = triage(
                    messages, Topics(settings.topic_prefix), settings.limits, now_ms
                )
                if good:
                    mailer = DirectMailer(self._store, self._sink, namespace, config)
                    await apply_batch(
                        self._store,
                        self._sink,
                        namespace,
                        good,
                        now_ms=now_ms,
                        config=config,
                        mailer=mailer,
                    )
                    await mailer.drain(now_ms)
                applied += len(messages)
        finally:
            await consumer.stop()
        log.info(
            "handover of %s to %s: applied %d records [%d, %d)",
            name,
            namespace,
            applied,
            start,
            end,
        )
