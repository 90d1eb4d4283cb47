"""The Faust app and its user agent: decode, dead-letter what is bad, fold the rest into Redis."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import faust
import redis.asyncio as aioredis

from projections.step import FoldConfig, Positioned, apply_batch
from projections.store import RedisStore
from schemas.codec import Rejected, decode, encode
from streams.settings import Settings
from streams.topics import Topics

log = logging.getLogger("profiles.worker")


def _credentials(settings: Settings) -> Any:
    if settings.kafka_sasl_mechanism:
        password = settings.kafka_sasl_password
        return faust.SASLCredentials(
            username=settings.kafka_sasl_username,
            password=password.get_secret_value() if password else None,
            mechanism=settings.kafka_sasl_mechanism,
            ssl_context=None,
        )
    return None


def dead_letter(reason: str, detail: str, message: Any) -> bytes:
    """The DLQ record (schemas.models.DeadLetter) for one consumed message."""
    return encode(
        {
            "reason": reason,
            "detail": detail,
            "topic": message.topic,
            "partition": message.partition,
            "offset": message.offset,
            "key": message.key,
            "value": message.value if message.value is not None else b"",
            "failed_at": int(time.time() * 1000),
        }
    )


def build_app(settings: Settings) -> faust.App:
    topics = Topics(settings.topic_prefix)
    app = faust.App(
        settings.group_id,
        broker=[f"kafka://{host}" for host in settings.kafka_bootstrap.split(",")],
        broker_credentials=_credentials(settings),
        topic_partitions=settings.partitions,
        topic_replication_factor=1,
        consumer_auto_offset_reset="earliest",
        web_enabled=False,
        datadir=settings.datadir,
        key_serializer="raw",
        value_serializer="raw",
        broker_commit_interval=1.0,
    )
    source = app.topic(*topics.sources, key_type=bytes, value_type=bytes)
    dlq = app.topic(topics.dlq, key_type=bytes, value_type=bytes)
    config = FoldConfig(gap_ms=settings.gap_ms, retention_days=settings.retention_days)
    limits = settings.limits
    password = settings.redis_password.get_secret_value() if settings.redis_password else None

    # concurrency=1: faust-streaming can commit past an unfinished message otherwise (#606).
    @app.agent(source, concurrency=1)
    async def users(stream: faust.Stream) -> None:
        store = RedisStore(aioredis.Redis.from_url(settings.redis_url, password=password))
        async for events in stream.take_events(settings.batch_size, settings.batch_seconds):
            now_ms = int(time.time() * 1000)
            good: list[Positioned] = []
            dead = []
            for event in events:
                msg = event.message
                try:
                    record = decode(msg.value or b"", limits, now_ms)
                    expected = topics.for_type(record.type)
                    if msg.topic != expected:
                        raise Rejected(
                            "wrong_topic", f"a {record.type} record belongs on {expected}"
                        )
                except Rejected as exc:
                    dead.append(
                        dlq.send(key=msg.key, value=dead_letter(exc.reason, exc.detail, msg))
                    )
                    continue
                good.append(Positioned(record, msg.topic, msg.partition, msg.offset))
            if dead:
                # Delivered before the batch is acked: a crash here redelivers, never drops.
                sent = await asyncio.gather(*dead)
                await asyncio.gather(*sent)
                log.warning("dead-lettered %d of %d records", len(dead), len(events))
            if good:
                await apply_batch(store, settings.namespace, good, now_ms=now_ms, config=config)

    return app
