"""The Faust app and its user agent: decode, dead-letter what is bad, fold the rest into Redis."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, cast

import faust
import redis.asyncio as aioredis

from projections import namespaces
from projections.keys import fence_field
from projections.membership import apply_definition, tick
from projections.step import FoldConfig, apply_batch, apply_company_batch
from projections.store import RedisStore
from schemas.codec import Rejected
from streams.definitions import decode_definition
from streams.deltas import KafkaSink, decode_delta
from streams.ingest import dead_letter as dead_letter_value
from streams.ingest import triage
from streams.kafka import MAX_DELTA_BYTES, faust_credentials
from streams.redis_clients import async_client
from streams.settings import Settings
from streams.topics import Topics

log = logging.getLogger("profiles.worker")


def build_app(settings: Settings) -> faust.App:
    topics = Topics(settings.topic_prefix)
    app = faust.App(
        settings.group_id,
        broker=[f"kafka://{host}" for host in settings.kafka_bootstrap.split(",")],
        broker_credentials=faust_credentials(settings),
        topic_partitions=settings.partitions,
        topic_replication_factor=1,
        consumer_auto_offset_reset="earliest",
        web_enabled=False,
        datadir=settings.datadir,
        key_serializer="raw",
        value_serializer="raw",
        broker_commit_interval=1.0,
        broker_session_timeout=settings.consumer_session_timeout_seconds,
        broker_heartbeat_interval=1.0,
        producer_max_request_size=MAX_DELTA_BYTES,
        # take_events can only gather what the stream buffer holds: room for two batches. It
        # is also what bounds memory under a flood: a full buffer pauses fetching, and the
        # backlog waits in Kafka.
        stream_buffer_maxsize=2 * max(settings.batch_size, settings.bulk_batch_size),
    )
    source = app.topic(*topics.sources, key_type=bytes, value_type=bytes)
    dlq = app.topic(topics.dlq, key_type=bytes, value_type=bytes)
    deltas = app.topic(topics.company_deltas, key_type=bytes, value_type=bytes)
    config = FoldConfig(gap_ms=settings.gap_ms, retention_days=settings.retention_days)
    limits = settings.limits
    sink = KafkaSink(deltas)

    def connect() -> tuple[Any, RedisStore]:
        client = async_client(settings)
        return client, RedisStore(client)

    async def dead_letter(dead: list[tuple[Any, bytes]], total: int) -> None:
        # Delivered before the batch is acked: a crash here redelivers, never drops.
        sent = await asyncio.gather(*(dlq.send(key=m.key, value=v) for m, v in dead))
        await asyncio.gather(*sent)
        log.warning("dead-lettered %d of %d records", len(dead), total)

    async def until_done(step: Callable[[], Awaitable[Any]]) -> None:
        while True:
            try:
                await step()
                return
            except (aioredis.ConnectionError, aioredis.TimeoutError) as exc:
                # Not acked yet: keep the batch and try again when Redis is back.
                log.error("redis unavailable (%s); retrying the batch in 1 s", exc)
                await asyncio.sleep(1)

    async def targets(client: Any) -> list[str]:
        try:
            return (await namespaces.read_live(client, settings.namespace)).targets
        except namespaces.ProjectionsLost as exc:
            # Writing on would build views from the records after the committed offsets only.
            # Nothing of this batch is acked: stop as a kill would, and say how to rebuild.
            log.critical("%s", exc)
            logging.shutdown()
            os._exit(exc.exit_code)

    async def fold_users(client: Any, store: RedisStore, good: list[Any], now_ms: int) -> None:
        # While a replay builds the next namespace, the live worker writes both.
        for namespace in await targets(client):
            await apply_batch(store, sink, namespace, good, now_ms=now_ms, config=config)

    async def fold_companies(client: Any, store: RedisStore, good: list[Any]) -> None:
        # Contributions to a namespace that is gone (replaced by a replay) are dropped.
        live = await targets(client)
        now_ms = int(time.time() * 1000)
        await apply_company_batch(store, [c for c in good if c.namespace in live], now_ms=now_ms)

    # concurrency=1: faust-streaming can commit past an unfinished message otherwise (#606).
    @app.agent(source, concurrency=1)
    async def users(stream: faust.StreamT) -> None:
        client, store = connect()
        async for events in cast(faust.Stream, stream).take_events(
            settings.batch_size, settings.batch_seconds
        ):
            now_ms = int(time.time() * 1000)
            good, dead = triage((e.message for e in events), topics, limits, now_ms)
            if dead:
                await dead_letter(dead, len(events))
            if good:
                await until_done(partial(fold_users, client, store, good, now_ms))

    @app.agent(deltas, concurrency=1)
    async def companies(stream: faust.StreamT) -> None:
        client, store = connect()
        async for events in cast(faust.Stream, stream).take_events(
            settings.bulk_batch_size, settings.batch_seconds
        ):
            good, dead = [], []
            for event in events:
                m = event.message
                try:
                    good.append(decode_delta(m.value or b"", m.topic, m.partition, m.offset))
                except Rejected as exc:
                    dead.append((m, dead_letter_value(exc.reason, exc.detail, m)))
            if dead:
                await dead_letter(dead, len(events))
            if good:
                await until_done(partial(fold_companies, client, store, good))

    async def define(
        client: Any, store: RedisStore, sid: str, seg: Any, fence: str, offset: int
    ) -> None:
        for namespace in await targets(client):
            now_ms = int(time.time() * 1000)
            await apply_definition(store, namespace, sid, seg, fence, offset, now_ms=now_ms)

    definitions = app.topic(topics.segments, key_type=bytes, value_type=bytes)

    @app.agent(definitions, concurrency=1)
    async def segments(stream: faust.StreamT) -> None:
        # One definition at a time: it is stored, then every profile it bears on is evaluated
        # (with progress), then acked; a crash in between redoes the evaluation.
        client, store = connect()
        async for event in cast(faust.Stream, stream).events():
            m = event.message
            try:
                segment_id, segment = decode_definition(m.key, m.value)
            except Rejected as exc:
                await dead_letter([(m, dead_letter_value(exc.reason, exc.detail, m))], 1)
                continue
            fence = fence_field(m.topic, m.partition)
            await until_done(partial(define, client, store, segment_id, segment, fence, m.offset))

    @app.timer(interval=settings.segment_tick_seconds, on_leader=True)
    async def segment_clock() -> None:
        # Rules that change with the clock (and members of a changed company) come due here.
        client, store = clock_connection
        try:
            for namespace in await targets(client):
                await tick(store, namespace, now_ms=int(time.time() * 1000))
        except (aioredis.ConnectionError, aioredis.TimeoutError) as exc:
            log.error("redis unavailable for the segment clock (%s)", exc)

    clock_connection = connect()
    return app
