"""The Faust app and its agents: decode, dead-letter what is bad, fold the rest into Redis.

Each agent's body runs a batch through `guard.until_applied`, so a batch is acked only once
it was applied (or its records dead-lettered): see streams/guard.py for what is retried and
what stops the worker. Each agent tells `Metrics` of every batch it is done with; a timer
samples the consumer's lag every second (streams/metrics.py)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from functools import partial
from typing import Any, cast

import faust

from projections import namespaces
from projections.company_step import apply_company_batch
from projections.identity_step import apply_graph_batch
from projections.membership import apply_definition, tick
from projections.step import FoldConfig, apply_batch
from projections.store import Lost, RedisStore
from schemas.codec import Rejected
from streams.definitions import decode_definition
from streams.deltas import KafkaSink, decode_delta
from streams.faust_light import App, Consumer, QuietMonitor, RawSchema
from streams.guard import EXIT_FAILED, Again, finish, stop, transient, until_applied
from streams.handover import Handover
from streams.ingest import dead_letter as dead_letter_value
from streams.ingest import triage
from streams.kafka import MAX_DELTA_BYTES, faust_credentials
from streams.merges import KafkaMailer, decode_graph, decode_merge
from streams.metrics import Metrics
from streams.redis_clients import async_client
from streams.settings import Settings
from streams.topics import Topics

log = logging.getLogger("profiles.worker")


def app_options(settings: Settings) -> dict[str, Any]:
    """The faust.App settings of the worker (bench/faust_floor.py measures Faust with them)."""
    # take_events can only gather what the stream buffer holds: room for two batches. It is
    # also what bounds memory under a flood: a full buffer pauses fetching, and the backlog
    # waits in Kafka.
    buffer = 2 * max(settings.batch_size, settings.bulk_batch_size)
    return dict(
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
        stream_buffer_maxsize=buffer,
        # Fetching pauses once the buffer is four-fifths full, but what a fetch holds is still
        # handed over: what finds the buffer full waits for room one message at a time, at
        # several times the cost of one that goes straight in. So a fetch is a tenth at most.
        broker_max_poll_records=min(500, buffer // 10),
        # Less per message: streams/faust_light.py (and App, the consumer, below).
        Monitor=QuietMonitor,
        Schema=RawSchema,
    )


def decode_each(
    messages: list[Any], decode: Callable[[Any], Any]
) -> tuple[list[Any], list[tuple[Any, bytes]]]:
    """Each message decoded, or dead-lettered with the reason it was refused."""
    found, dead = [], []
    for m in messages:
        try:
            found.append(decode(m))
        except Rejected as exc:
            dead.append((m, dead_letter_value(exc.reason, exc.detail, m)))
    return found, dead


def build_app(settings: Settings, metrics: Metrics | None = None) -> faust.App:
    metrics = metrics or Metrics()
    topics = Topics(settings.topic_prefix)
    app = App(settings.group_id, **app_options(settings))
    # the merge protocol's messages to ids come with the ids' records (docs/design.md §7)
    source = app.topic(*topics.sources, topics.merges, key_type=bytes, value_type=bytes)
    merges = app.topic(topics.merges, key_type=bytes, value_type=bytes)
    links = app.topic(topics.identity, key_type=bytes, value_type=bytes)
    dlq = app.topic(topics.dlq, key_type=bytes, value_type=bytes)
    deltas = app.topic(topics.company_deltas, key_type=bytes, value_type=bytes)
    base_config = FoldConfig(gap_ms=settings.gap_ms, retention_days=settings.retention_days)
    limits = settings.limits
    sink = KafkaSink(deltas)
    checked: dict[str, namespaces.Meta] = {}  # the format and floor of each namespace seen

    def connect() -> tuple[Any, RedisStore]:
        client = async_client(settings)
        return client, RedisStore(client)

    async def dead_letter(dead: list[tuple[Any, bytes]], total: int) -> None:
        # Delivered before the batch is acked: a crash here redelivers, never drops.
        sent = await asyncio.gather(*(dlq.send(key=m.key, value=v) for m, v in dead))
        await asyncio.gather(*sent)
        log.warning("dead-lettered %d of %d records", len(dead), total)

    async def pointer(client: Any) -> namespaces.Pointer:
        found = await namespaces.read_live(client, settings.namespace)
        if found.current not in checked:  # a namespace keeps its format: checked once
            checked[found.current] = await namespaces.check_format(client, found.current)
        return found

    async def written(client: Any, namespace: str, lost: Lost) -> None:
        """A write found its namespace's marker gone: the namespace was retired by a
        replay's flip (do the batch again, in the new one), or Redis lost it."""
        now = await namespaces.read_live(client, settings.namespace)
        if lost.namespace != now.current:
            raise Again from lost
        raise namespaces.ProjectionsLost(
            settings.namespace, f"the marker of namespace {namespace!r} is gone from a slot"
        ) from lost

    def mailer(namespace: str) -> KafkaMailer:
        return KafkaMailer({"identity": links, "merges": merges}, namespace)

    async def fold_users(
        client: Any,
        store: RedisStore,
        handover: Handover,
        batch: list[Any],
        good: list[Any],
        merged: list[tuple[str, list[Any]]],
    ) -> None:
        now_ms = int(time.time() * 1000)
        namespace = (await pointer(client)).current
        config = replace(base_config, since_ms=checked[namespace].since)
        try:
            there = await handover.before(namespace, batch, config)
            if there:  # applied by the replay that built the namespace
                good = [p for p in good if p.offset >= there.get((p.topic, p.partition), 0)]
            # merge messages to the namespace written now (a replay's flip retires the others)
            good = good + [p for ns, items in merged if ns == namespace for p in items]
            await apply_batch(
                store, sink, namespace, good, now_ms=now_ms, config=config, mailer=mailer(namespace)
            )
        except Lost as exc:
            await written(client, namespace, exc)

    async def fold_companies(client: Any, store: RedisStore, good: list[Any]) -> None:
        # Contributions to a namespace that is no longer current (a replay flipped) are
        # dropped: the new one got its own from the rebuild and the handover.
        namespace = (await pointer(client)).current
        now_ms = int(time.time() * 1000)
        mine = [c for c in good if c.namespace == namespace]
        try:
            await apply_company_batch(store, mine, now_ms=now_ms)
        except Lost as exc:
            await written(client, namespace, exc)

    # concurrency=1: faust-streaming can commit past an unfinished message otherwise (#606).
    @app.agent(source, concurrency=1)
    async def users(stream: faust.StreamT) -> None:
        client, store = connect()
        handover = Handover(settings, client, store, sink)

        async def batch(events: Sequence[Any]) -> None:
            started = time.monotonic()
            messages = [e.message for e in events]
            sources = [m for m in messages if m.topic != topics.merges]
            good, dead = triage(sources, topics, limits, int(time.time() * 1000))
            merged, bad = decode_each(
                [m for m in messages if m.topic == topics.merges],
                lambda m: decode_merge(m.value or b"", m.topic, m.partition, m.offset),
            )
            dead += bad
            if dead:
                await until_applied("dead letters", partial(dead_letter, dead, len(events)))
            if good or merged:
                fold = partial(fold_users, client, store, handover, sources, good, merged)
                await until_applied("a user batch", fold)
            metrics.done("users", messages, dead, started, good)

        async for events in cast(faust.Stream, stream).take_events(
            settings.batch_size, settings.batch_seconds
        ):
            await finish(batch(events))

    @app.agent(deltas, concurrency=1)
    async def companies(stream: faust.StreamT) -> None:
        client, store = connect()

        async def batch(events: Sequence[Any]) -> None:
            started = time.monotonic()
            messages = [e.message for e in events]
            found, dead = decode_each(
                messages, lambda m: decode_delta(m.value or b"", m.topic, m.partition, m.offset)
            )
            good = [c for parts in found for c in parts]
            if dead:
                await until_applied("dead letters", partial(dead_letter, dead, len(events)))
            if good:
                await until_applied("a company batch", partial(fold_companies, client, store, good))
            metrics.done("companies", messages, dead, started)

        async for events in cast(faust.Stream, stream).take_events(
            settings.bulk_batch_size, settings.batch_seconds
        ):
            await finish(batch(events))

    async def fold_links(client: Any, store: RedisStore, found: list[tuple[str, Any]]) -> None:
        namespace = (await pointer(client)).current
        items = [item for ns, item in found if ns == namespace]
        try:
            notes = await apply_graph_batch(store, namespace, items)
        except Lost as exc:
            await written(client, namespace, exc)
        await mailer(namespace).send_notes(notes)

    @app.agent(links, concurrency=1)
    async def identity(stream: faust.StreamT) -> None:
        # Each app's link graph (docs/design.md §7): aliases, unmerges and deletes in, each id
        # of a changed component told its root (and the deletes that reach it) once written.
        client, store = connect()

        async def batch(events: Sequence[Any]) -> None:
            started = time.monotonic()
            messages = [e.message for e in events]
            found, dead = decode_each(messages, lambda m: decode_graph(m.value or b""))
            if dead:
                await until_applied("dead letters", partial(dead_letter, dead, len(events)))
            if found:
                await until_applied("a link batch", partial(fold_links, client, store, found))
            metrics.done("identity", messages, dead, started)

        async for events in cast(faust.Stream, stream).take_events(
            settings.bulk_batch_size, settings.batch_seconds
        ):
            await finish(batch(events))

    async def define(client: Any, store: RedisStore, sid: str, seg: Any, offset: int) -> None:
        # Definitions go to a namespace a replay is building too: each id keeps its latest
        # record, so the rebuild and this agent may store them in any order.
        found = await pointer(client)
        for namespace in [found.current] if found.next is None else [found.current, found.next]:
            now_ms = int(time.time() * 1000)
            try:
                await apply_definition(store, namespace, sid, seg, offset, now_ms=now_ms)
            except Lost as exc:
                if namespace == found.next:
                    continue  # the replay gave up or is starting over; it loads them again
                await written(client, namespace, exc)

    definitions = app.topic(topics.segments, key_type=bytes, value_type=bytes)

    @app.agent(definitions, concurrency=1)
    async def segments(stream: faust.StreamT) -> None:
        # One definition at a time: it is stored, then every profile it bears on is evaluated
        # (with progress), then acked; a crash in between redoes the evaluation.
        client, store = connect()

        async def one(m: Any) -> None:
            started = time.monotonic()
            try:
                segment_id, segment = decode_definition(m.key, m.value)
            except Rejected as exc:
                dead = [(m, dead_letter_value(exc.reason, exc.detail, m))]
                await until_applied("dead letters", partial(dead_letter, dead, 1))
                metrics.done("segments", [m], dead, started)
                return
            step = partial(define, client, store, segment_id, segment, m.offset)
            await until_applied("a segment definition", step)
            metrics.done("segments", [m], [], started)

        async for event in cast(faust.Stream, stream).events():
            await finish(one(event.message))

    @app.timer(interval=settings.segment_tick_seconds, on_leader=True)
    async def segment_clock() -> None:
        # Rules that change with the clock (and members of a changed company) come due here.
        # A tick that fails is simply the next one's work: it acks nothing.
        client, store = clock_connection
        try:
            namespace = (await pointer(client)).current
            await tick(store, namespace, now_ms=int(time.time() * 1000))
        except Lost:
            pass  # a namespace a replay retired, or lost: the batches find out which
        except (namespaces.ProjectionsLost, namespaces.OtherFormat) as exc:
            stop(exc.exit_code, str(exc))
        except Exception as exc:
            if not transient(exc):
                stop(EXIT_FAILED, f"the segment clock failed: {type(exc).__name__}: {exc}", exc)
            log.error("the segment clock skipped a tick: %s: %s", type(exc).__name__, exc)

    @app.task
    async def ready() -> None:
        served = metrics.serve(settings.metrics_port) if settings.metrics_port else None
        log.info(
            "worker ready: group %s, namespace %s, topics %s*; %s",
            settings.group_id,
            settings.namespace,
            settings.topic_prefix,
            f"metrics on port {served}" if served else "no metrics",
        )

    @app.timer(interval=1.0)
    async def account() -> None:
        # What the consumer knows of the lag: attributes read, nothing asked of Kafka.
        metrics.tick(cast(Consumer, app.consumer).lags())

    clock_connection = connect()
    return app
