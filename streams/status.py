"""Consumer lag per group/topic/partition, DLQ depth and processed counts, from Kafka itself."""

from __future__ import annotations

from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from streams.kafka import client_options, partitions
from streams.settings import Settings
from streams.topics import Topics


async def pipeline_status(settings: Settings) -> dict[str, Any]:
    topics = Topics(settings.topic_prefix)
    opts = client_options(settings)
    admin = AIOKafkaAdminClient(**opts)
    consumer = AIOKafkaConsumer(**opts, enable_auto_commit=False)
    await admin.start()
    await consumer.start()
    try:
        tps = await partitions(
            settings, [*topics.sources, topics.company_deltas, topics.segments, topics.dlq]
        )
        ends = await consumer.end_offsets(tps) if tps else {}
        begins = await consumer.beginning_offsets(tps) if tps else {}
        groups = []
        for group in (settings.group_id,):
            try:
                committed = await admin.list_consumer_group_offsets(group)
            except KafkaError:  # the group has not been created yet: nothing committed
                committed = {}
            rows = []
            for tp in tps:
                if tp.topic == topics.dlq:
                    continue
                meta = committed.get(tp)
                position = meta.offset if meta is not None and meta.offset >= 0 else begins[tp]
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
        return {"groups": groups, "dlq": dlq, "lag": sum(g["lag"] for g in groups)}
    finally:
        await consumer.stop()
        await admin.close()
