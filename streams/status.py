"""Consumer lag per group/topic/partition, DLQ depth and processed counts, from Kafka itself;
and the topics that keep records for less than the views need."""

from __future__ import annotations

from typing import Any

from aiokafka import AIOKafkaConsumer

from streams.kafka import client_options, committed_offsets, partitions, retention_shortfalls
from streams.settings import Settings
from streams.topics import Topics


async def pipeline_status(settings: Settings) -> dict[str, Any]:
    topics = Topics(settings.topic_prefix)
    opts = client_options(settings)
    consumer = AIOKafkaConsumer(**opts, enable_auto_commit=False)
    try:
        await consumer.start()  # inside: a refused start is stopped too (no "Unclosed" warning)
        tps = await partitions(
            settings, [*topics.sources, topics.company_deltas, topics.segments, topics.dlq]
        )
        ends = await consumer.end_offsets(tps) if tps else {}
        begins = await consumer.beginning_offsets(tps) if tps else {}
        groups = []
        for group in (settings.group_id,):
            committed = await committed_offsets(settings, group)
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
            groups.append(
                {
                    "group": group,
                    "lag": sum(r["lag"] for r in rows),
                    # records of the SDK topics and commands, then the internal company deltas
                    "processed": sum(
                        r["processed"] for r in rows if r["topic"] != topics.company_deltas
                    ),
                    "deltas_processed": sum(
                        r["processed"] for r in rows if r["topic"] == topics.company_deltas
                    ),
                    "partitions": rows,
                }
            )
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
