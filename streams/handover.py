"""The live worker's side of a replay's flip: what it applied elsewhere comes to the new namespace.

A replay builds its namespace on its own (its own consumer group, fences and reads) while
the live worker writes only the current one. When it flips, it leaves in the new namespace
the offset its rebuild read each source partition to (keys.handover). A live batch that
starts at or below that offset overlaps what the rebuild applied — the fences skip it. One
that starts above it follows records the live worker applied to the old namespace only:
before it is written, those records are read again from Kafka and applied (the gap). Then
the partition's entry goes, and the partition costs nothing more.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from projections import keys
from projections.step import FoldConfig, Sink, apply_batch
from projections.store import Store
from streams.ingest import triage
from streams.kafka import client_options
from streams.settings import Settings
from streams.topics import Topics

log = logging.getLogger("profiles.worker")


def gaps(covered: dict[str, int], firsts: dict[tuple[str, int], int]) -> dict[str, tuple[int, int]]:
    """Pure: for each partition of the batch (its first offset) that has an entry, the
    offsets [from, to) to apply before the batch — empty where the batch overlaps."""
    out = {}
    for (topic, partition), first in firsts.items():
        name = f"{topic}:{partition}"
        if name in covered:
            out[name] = (covered[name], max(covered[name], first))
    return out


class Handover:
    """The entries of every namespace this worker has written, cached: they only ever go."""

    def __init__(self, settings: Settings, client: Any, store: Store, sink: Sink) -> None:
        self._settings = settings
        self._client = client
        self._store = store
        self._sink = sink
        self._entries: dict[str, dict[str, int]] = {}

    async def before(self, namespace: str, messages: Iterable[Any], config: FoldConfig) -> None:
        """Apply to `namespace` what its rebuild did not read and the batch does not hold."""
        entries = self._entries.get(namespace)
        if entries is None:
            raw = await self._client.hgetall(keys.handover(namespace))
            entries = {k.decode(): int(v) for k, v in raw.items()}
            self._entries[namespace] = entries
        if not entries:
            return
        firsts: dict[tuple[str, int], int] = {}
        for m in messages:
            tp = (m.topic, m.partition)
            firsts[tp] = min(firsts.get(tp, m.offset), m.offset)
        for name, (start, end) in gaps(entries, firsts).items():
            # another worker may have handed this partition over since it was cached
            now = await self._client.hget(keys.handover(namespace), name)
            if now is not None:
                start = int(now)
                if end > start:
                    await self._fill(namespace, name, start, end, config)
                await self._client.hdel(keys.handover(namespace), name)
            entries.pop(name, None)

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
                    await apply_batch(
                        self._store, self._sink, namespace, good, now_ms=now_ms, config=config
                    )
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
