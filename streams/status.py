"""Consumer lag per group/topic/partition, DLQ depth and processed counts, from Kafka itself;
and the topics that keep records for less than the views need."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.kafka import (
    client_options,
    committed_offsets,
    group_members,
    partitions,
    retention_shortfalls,
)
from streams.settings import Settings
from streams.topics import Topics


async def pipeline_status(settings: Settings, window: float = 0) -> dict[str, Any]:
    """Lag, processed records and dead letters now; with a `window` (seconds), also the rates
    over it: records processed and records arriving per second."""
    topics = Topics(settings.topic_prefix)
    opts = client_options(settings)
    consumer = AIOKafkaConsumer(**opts, enable_auto_commit=False)
    try:
        await consumer.start()  # inside: a refused start is stopped too (no "Unclosed" warning)
        internal = [topics.company_deltas, topics.identity, topics.merges]
        tps = await partitions(settings, [*topics.sources, *internal, topics.segments, topics.dlq])
        begins = await consumer.beginning_offsets(tps) if tps else {}
        group = settings.group_id
        ends = await consumer.end_offsets(tps) if tps else {}
        committed = await committed_offsets(settings, group)
        rates: dict[str, float] = {}
        if window > 0:
            started = time.monotonic()
            await asyncio.sleep(window)
            ends_then, committed_then = ends, committed
            ends = await consumer.end_offsets(tps) if tps else {}
            committed = await committed_offsets(settings, group)
            sources = [tp for tp in tps if tp.topic in topics.sources]
            rates = rates_between(
                sources, begins, (ends_then, committed_then), (ends, committed),
                time.monotonic() - started,
            )  # fmt: skip
        rows = []
        for tp in tps:
            if tp.topic == topics.dlq:
                continue
            position = committed.get(tp, begins[tp])
            rows.append(
                {
                    "topic": tp.topic,
                    "partition": tp.partition,
                    "committed": position,
                    "end": ends[tp],
                    "lag": max(0, ends[tp] - position),
                    "processed": max(0, position - begins[tp]),
                }
            )
        groups = [
            {
                "group": group,
                "lag": sum(r["lag"] for r in rows),
                # records of the SDK topics and commands, then the internal company deltas
                # (the identity links and merges count in the lag only)
                "processed": sum(r["processed"] for r in rows if r["topic"] not in internal),
                "deltas_processed": sum(
                    r["processed"] for r in rows if r["topic"] == topics.company_deltas
                ),
                "workers": await group_members(settings, group),
                **rates,
                "partitions": rows,
            }
        ]
        dlq = sum(ends[tp] - begins[tp] for tp in tps if tp.topic == topics.dlq)
        short = await retention_shortfalls(settings)
        return {
            "groups": groups,
            "dlq": dlq,
            "lag": sum(g["lag"] for g in groups),
            # topics whose records may leave Kafka while the views hold them (README: Retention)
            "retention": [t.shortfall_json() for t in short],
        }
    finally:
        await consumer.stop()


Offsets = dict[TopicPartition, int]


def rates_between(
    sources: list[TopicPartition],
    begins: Offsets,
    then: tuple[Offsets, Offsets],
    now: tuple[Offsets, Offsets],
    seconds: float,
) -> dict[str, float]:
    """Records processed (committed offsets moved) and arriving (end offsets moved) per second
    between two (ends, committed) readings `seconds` apart; a partition without a commit is
    at its beginning."""
    (ends_then, committed_then), (ends, committed) = then, now
    processed = sum(
        committed.get(tp, begins[tp]) - committed_then.get(tp, begins[tp]) for tp in sources
    )
    arrived = sum(ends[tp] - ends_then[tp] for tp in sources)
    return {"rate": processed / seconds, "incoming": arrived / seconds, "window_seconds": seconds}
