"""The trickle part: what one new event costs a user with a long history (issue 18).

For each history length H, users with H events over the last 30 days go into topics and a
namespace of their own and one worker folds them (its CPU per event there is the bulk
reference). Then new track events come round-robin over those users at a modest steady
rate, never one to a user whose previous event is not applied yet: every user step folds
exactly one new event into H stored ones, which is what a live user costs. Measured: the
worker's CPU (/proc) and Redis's CPU (INFO) per event of that steady phase."""

from __future__ import annotations

import asyncio
import random
import subprocess
import time
import uuid
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from bench.data import DAYS, SEED
from bench.run import (
    BenchError,
    Metrics,
    Run,
    check_alive,
    checkpoint,
    cpu_seconds,
    log,
    machine_cpu,
    redis_cpu,
    settings_for,
    start_workers,
    stop_workers,
    wait_caught_up,
)
from projections import keys
from projections.reader import NotFound, Reader
from schemas.codec import encode
from schemas.generate import DAY_MS, MIN_MS, generate
from streams.kafka import client_options, ensure_topics
from streams.publish import PublishReport, send_records
from streams.redis_clients import sync_client
from streams.settings import Settings
from streams.topics import Topics, record_key

# H -> users. Enough users at H=10 that each gets an event every 2 s at 250/s (a worker
# batch is 0.2 s), and few enough at H=5000 that the history folds in a minute or two. A few
# users cannot take 250/s one event per step: each waits for its previous event's batch.
HISTORIES = "10:500,1000:50,5000:20"
IDLE_SECONDS = 3.0  # the worker's CPU with nothing to do, measured before the steady phase
GATE_POLL_SECONDS = 0.01
SHORTFALL = 0.9  # a trickle below this share of its rate did not keep up one event per step


@dataclass
class Person:
    app: str
    user: str
    tracks: list[dict[str, Any]]  # the user's generated track events: templates for new ones


def parse_histories(text: str) -> list[tuple[int, int]]:
    """History lengths and their users: "10:500,1000:50" -> [(10, 500), (1000, 50)]."""
    out = []
    for part in text.split(","):
        h, _, users = part.partition(":")
        out.append((int(h), int(users)))
    if not out or any(h < 1 or users < 1 for h, users in out):
        raise ValueError(text)
    return out


def new_id(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def session_times(rng: random.Random, n: int, lo: int, hi: int) -> list[int]:
    """n instants in [lo, hi], in sessions of 5 to 40 events 10 to 90 s apart."""
    out: list[int] = []
    while len(out) < n:
        at = lo + int(rng.random() * (hi - lo))
        for _ in range(min(n - len(out), 5 + int(rng.random() * 36))):
            out.append(min(at, hi))
            at += 10_000 + int(rng.random() * 80_000)
    return sorted(out)


def histories(h: int, count: int, end_ms: int) -> tuple[list[Person], list[dict[str, Any]]]:
    """`count` users with `h` events each over the last DAYS days, in event-time order: each
    user's generated identify (its company included), then tracks and pages in sessions,
    copied from the user's own generated ones with fresh ids and times."""
    rng = random.Random(SEED + h)
    by_user: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in generate(users=2 * count + 20, days=DAYS, end_ms=end_ms, seed=SEED):
        by_user.setdefault((r["app_id"], r["user_id"]), []).append(r)
    start_ms = end_ms - DAYS * DAY_MS
    people: list[Person] = []
    records: list[dict[str, Any]] = []
    for (app, user), rs in by_user.items():
        identify = next((r for r in rs if r["type"] == "identify"), None)
        tracks = [r for r in rs if r["type"] == "track"]
        pages = [r for r in rs if r["type"] == "page"]
        if identify is None or not tracks or not pages:
            continue
        people.append(Person(app, user, tracks))
        records.append({**identify, "event_id": new_id(rng), "timestamp": start_ms})
        for at in session_times(rng, h - 1, start_ms + MIN_MS, end_ms - 10 * MIN_MS):
            base = rng.choice(tracks if rng.random() < 0.5 else pages)
            records.append({**base, "event_id": new_id(rng), "timestamp": at})
        if len(people) == count:
            break
    if len(people) < count:
        raise BenchError(f"the generator gave {len(people)} users with a history, not {count}")
    records.sort(key=lambda r: r["timestamp"])
    return people, records


async def shown(reader: Reader, app: str, user: str) -> None:
    """Until the reader finds the user: the worker has joined and owns its partitions."""
    deadline = time.monotonic() + 120
    while True:
        try:
            reader.user(app, user)
            return
        except NotFound:
            pass
        checkpoint()
        if time.monotonic() > deadline:
            raise BenchError("the trickle worker showed nothing within 120 s")
        await asyncio.sleep(0.1)


async def trickle(
    run: Run,
    procs: list[subprocess.Popen[bytes]],
    cfg: Settings,
    rc: aioredis.Redis,
    namespace: str,
    people: list[Person],
    rate: float,
    seconds: float,
) -> tuple[int, float]:
    """New track events round-robin over `people` at `rate` for `seconds`; a user's next one
    waits until its previous one is applied, so no worker batch holds two of one user.
    Applied: its partition's committed offset is past it, or (sooner: commits come once a
    second) the user hash's fence, written in the step's own atomic write, is at it.
    Returns (events sent, seconds the sends waited for that)."""
    topic = Topics(cfg.topic_prefix).for_type("track")
    rng = random.Random(SEED)
    producer = AIOKafkaProducer(
        **client_options(cfg), acks="all", enable_idempotence=True, linger_ms=5
    )
    admin = AIOKafkaAdminClient(**client_options(cfg))
    committed: dict[TopicPartition, int] = {}
    last: dict[int, asyncio.Future[Any]] = {}  # user -> its latest event's send
    stop_at = time.monotonic() + seconds

    async def follow() -> None:
        while time.monotonic() < stop_at:
            try:
                found = await admin.list_consumer_group_offsets(cfg.group_id)
            except KafkaError:
                found = {}
            committed.update({tp: meta.offset for tp, meta in found.items()})
            await asyncio.sleep(0.25)

    async def applied(u: int) -> bool:
        sending = last.get(u)
        if sending is None:
            return True
        meta = await sending
        if committed.get(TopicPartition(meta.topic, meta.partition), -1) > meta.offset:
            return True
        person = people[u]
        fence = await rc.hget(
            keys.user(namespace, person.app, person.user),
            keys.fence_field(meta.topic, meta.partition),
        )
        return fence is not None and int(fence) >= meta.offset

    async def produce() -> tuple[int, float]:
        sent, waited = 0, 0.0
        waiting_since: float | None = None
        next_at = time.monotonic()
        while (now := time.monotonic()) < stop_at:
            checkpoint()
            check_alive(run, procs)
            while next_at <= now:
                u = sent % len(people)
                if not await applied(u):
                    waiting_since = now if waiting_since is None else waiting_since
                    next_at = now  # no debt: the pace is what the worker allows
                    break
                if waiting_since is not None:
                    waited, waiting_since = waited + now - waiting_since, None
                person = people[u]
                record = {
                    **rng.choice(person.tracks),
                    "event_id": str(uuid.uuid4()),
                    "timestamp": int(time.time() * 1000),
                }
                key = record_key(person.app, person.user)
                last[u] = await producer.send(topic, encode(record), key=key)
                sent += 1
                next_at += 1 / rate
            await asyncio.sleep(GATE_POLL_SECONDS)
        if waiting_since is not None:
            waited += stop_at - waiting_since
        await asyncio.gather(*last.values())
        return sent, waited

    await producer.start()
    await admin.start()
    try:
        (sent, waited), _ = await asyncio.gather(produce(), follow())
    finally:
        await producer.stop()
        await admin.close()
    return sent, waited


@dataclass
class Phase:
    """One steady phase of a trickle."""

    rate: float  # achieved
    sent: int
    gated: float  # the share of the phase the sends waited for users' previous events
    cpu: float  # worker CPU seconds, until every event was applied
    redis: float  # Redis CPU seconds, the same
    elapsed: float  # seconds, the same
    machine: float  # every process's CPU seconds, the same

    def metrics(self, p: str) -> Metrics:
        return {
            p + "rate": (self.rate, "events/s"),
            p + "gated": (self.gated, "ratio"),
            p + "worker_busy": (self.cpu / self.elapsed, "cores"),
            p + "machine_busy": (self.machine / self.elapsed, "cores"),
            p + "worker_cpu": (self.cpu / self.sent * 1e6, "µs/event"),
            p + "redis_cpu": (self.redis / self.sent * 1e6, "µs/event"),
        }


async def one(
    run: Run, rc: aioredis.Redis, h: int, count: int, rates: list[float], seconds: float
) -> tuple[Metrics, list[Phase]]:
    """Fold the history of `count` users with `h` events each, then trickle at each rate:
    (the bulk reference and the worker's idle CPU, the phases)."""
    prefix = f"bench.trickle-{run.id}-{h}."
    name = run.name(f"trickle{h}")
    run.topic_prefixes.append(prefix)
    run.namespaces.append(name)
    run.groups.append(name)
    cfg = settings_for(prefix, name, name)
    await ensure_topics(cfg)
    people, history = histories(h, count, end_ms=int(time.time() * 1000))
    log(f"trickle: H={h:,}: {count} users, {len(history):,} events of history into {name}")
    procs = start_workers(run, cfg, 1)
    worker = procs[0]
    phases = []
    try:
        reader = Reader(sync_client(cfg), name)
        first = history[0]
        await send_records([first], cfg, PublishReport())
        await shown(reader, first["app_id"], first["user_id"])
        # The bulk reference: the rest of the history, folded as it comes (big batches).
        cpu0, redis0, t0 = cpu_seconds(worker), await redis_cpu(rc), time.monotonic()
        await send_records(history[1:], cfg, PublishReport())
        await wait_caught_up(run, cfg, procs, t0)
        bulk_cpu, bulk_redis = cpu_seconds(worker) - cpu0, await redis_cpu(rc) - redis0
        idle0 = cpu_seconds(worker)
        await asyncio.sleep(IDLE_SECONDS)
        idle = (cpu_seconds(worker) - idle0) / IDLE_SECONDS
        for rate in rates:
            checkpoint()
            log(f"trickle: H={h:,}: {rate:,.0f} events/s for {seconds:g} s, one per user step")
            cpu0, redis0, t0 = cpu_seconds(worker), await redis_cpu(rc), time.monotonic()
            machine0 = machine_cpu()
            sent, waited = await trickle(
                run, procs, cfg, rc, reader.namespace, people, rate, seconds
            )
            if sent == 0:
                raise BenchError(f"the trickle of H={h} sent nothing")
            await wait_caught_up(run, cfg, procs, t0)  # every event applied, then the CPU
            cpu, redis_used = cpu_seconds(worker) - cpu0, await redis_cpu(rc) - redis0
            elapsed, machine = time.monotonic() - t0, machine_cpu() - machine0
            phase = Phase(sent / seconds, sent, waited / seconds, cpu, redis_used, elapsed, machine)
            phases.append(phase)
    finally:
        stop_workers(run, procs)
    bulk_events = len(history) - 1
    bulk: Metrics = {
        f"trickle_h{h}_users": (count, "users"),
        f"trickle_h{h}_bulk_worker_cpu": (bulk_cpu / bulk_events * 1e6, "µs/event"),
        f"trickle_h{h}_bulk_redis_cpu": (bulk_redis / bulk_events * 1e6, "µs/event"),
        f"trickle_h{h}_worker_idle": (idle, "cores"),
    }
    return bulk, phases


async def measure(run: Run, rc: aioredis.Redis, spec: str, rate: float, seconds: float) -> Metrics:
    """Every history length of `spec` ("H:users,..."), longest first, then the ratios.

    A worker's CPU per event depends on the rate too (per batch and per busy second), and a
    long history may not keep up with `rate` one event per step: then the shortest history
    also trickles at the rate the longest one reached, and the ratio of the two is taken at
    that same rate."""
    sizes = sorted(parse_histories(spec), reverse=True)
    found: dict[int, tuple[Metrics, list[Phase]]] = {}
    for h, count in sizes[:-1]:
        checkpoint()
        found[h] = await one(run, rc, h, count, [rate], seconds)
    (hi, _), (lo, lo_count) = sizes[0], sizes[-1]
    reached = found[hi][1][0].rate if hi in found else rate
    rates = [rate] if reached >= SHORTFALL * rate else [rate, reached]
    found[lo] = await one(run, rc, lo, lo_count, rates, seconds)
    out: Metrics = {}
    for h in sorted(found):
        bulk, phases = found[h]
        out |= bulk
        out |= phases[0].metrics(f"trickle_h{h}_")
        if len(phases) > 1:
            out |= phases[1].metrics(f"trickle_h{h}_matched_")
    if hi > lo:
        same = "matched_" if len(found[lo][1]) > 1 else ""
        for what in ("worker_cpu", "redis_cpu"):
            ratio = out[f"trickle_h{hi}_{what}"][0] / out[f"trickle_h{lo}_{same}{what}"][0]
            out[f"trickle_h{hi}_vs_h{lo}_{what}"] = (ratio, "ratio")
    bulk_cpu = out[f"trickle_h{lo}_bulk_worker_cpu"][0]
    out[f"trickle_h{lo}_vs_bulk"] = (out[f"trickle_h{lo}_worker_cpu"][0] / bulk_cpu, "ratio")
    return out
