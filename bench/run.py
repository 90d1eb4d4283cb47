"""The benchmark: N generated events through the floor, the pipeline, replay, reads, freshness;
the trickle and live parts (bench/trickle.py, bench/live.py) on top."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis
import redis.asyncio as aioredis
import redis.asyncio.cluster
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete
from aiokafka.errors import KafkaError
from pydantic import ValidationError

from bench.data import SEED, make_records
from bench.topics import delete_topics
from projections import keys
from projections.reader import Reader
from replay.flip import remove_namespace
from replay.rebuild import rebuild
from schemas.codec import decode_bytes, encode, validate
from schemas.generate import DAY_MS, generate
from streams.kafka import client_options, ensure_topics, partitions
from streams.kafka import delete_groups as kafka_delete_groups
from streams.publish import PublishReport, send_records
from streams.redis_clients import async_client, sync_client
from streams.settings import Settings
from streams.status import pipeline_status
from streams.topics import Topics, record_key

BENCH = Path(__file__).resolve().parent
PROFILES = Path(sys.executable).parent / "profiles"
POLL_SECONDS = 0.25
STALL_SECONDS = 180  # no progress for this long: the pipeline is stuck, not slow
VALIDATE_SAMPLE = 20_000

PARTS = ("faust-floor", "pipeline", "workers", "replay", "trickle", "live")
Metrics = dict[str, tuple[Any, str]]  # name -> (value, unit)


class BenchError(Exception):
    """What stops the benchmark; its message is the one line printed."""


class Interrupted(BenchError):
    """Ctrl-C or SIGTERM, acted on at the next checkpoint so that cleanup still runs."""


_signalled = False


def on_signal(_signum: int, _frame: Any) -> None:
    # A flag, not asyncio's cancellation: redis.asyncio can swallow a pending cancel().
    global _signalled
    if _signalled:
        raise KeyboardInterrupt  # the second one: stop now, cleanup or not
    _signalled = True


def checkpoint() -> None:
    if _signalled:
        raise Interrupted("interrupted")


def log(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def settings_for(prefix: str, namespace: str = "bench", group: str = "bench") -> Settings:
    # Every name the benchmark touches starts with "bench": it shares Kafka and Redis.
    assert (
        prefix.startswith("bench") and namespace.startswith("bench") and group.startswith("bench")
    )
    return Settings(topic_prefix=prefix, namespace=namespace, group_id=group)


@dataclass
class Dataset:
    """What was loaded under `prefix`; kept in bench/.loaded-N.json so later runs skip the load."""

    prefix: str
    events: int
    seed: int
    end_ms: int
    users: list[tuple[str, str]]  # (app_id, user_id)
    companies: list[tuple[str, str]]  # (app_id, company_id)

    @classmethod
    def read(cls, path: Path) -> Dataset | None:
        try:
            raw = json.loads(path.read_text())
            return cls(
                raw["prefix"],
                raw["events"],
                raw["seed"],
                raw["end_ms"],
                [(a, u) for a, u in raw["users"]],
                [(a, c) for a, c in raw["companies"]],
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None


@dataclass
class Run:
    """This run's unique names, and what it made that cleanup has to remove."""

    id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    tmp: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="bench-")))
    workers: dict[subprocess.Popen[bytes], Path] = field(default_factory=dict)  # -> its log
    namespaces: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)
    topic_prefixes: list[str] = field(default_factory=list)

    def name(self, tag: str) -> str:
        return f"bench-{self.id}-{tag}"


# ---- Kafka helpers ---------------------------------------------------------------------------


async def offsets(
    cfg: Settings, names: list[str]
) -> tuple[dict[TopicPartition, int], dict[TopicPartition, int]]:
    """(beginning, end) offset of every partition of the named topics that exist."""
    tps = await partitions(cfg, names)
    if not tps:
        return {}, {}
    consumer = AIOKafkaConsumer(**client_options(cfg), enable_auto_commit=False)
    await consumer.start()
    try:
        return await consumer.beginning_offsets(tps), await consumer.end_offsets(tps)
    finally:
        await consumer.stop()


async def truncate(cfg: Settings) -> None:
    """Drop earlier runs' company deltas and dead letters: a fresh group would read them all."""
    topics = Topics(cfg.topic_prefix)
    begins, ends = await offsets(cfg, [topics.company_deltas, topics.dlq])
    doomed = {tp: RecordsToDelete(end) for tp, end in ends.items() if end > begins[tp]}
    if not doomed:
        return
    admin = AIOKafkaAdminClient(**client_options(cfg))
    await admin.start()
    try:
        await admin.delete_records(doomed)
    finally:
        await admin.close()


async def delete_groups(cfg: Settings, groups: list[str]) -> list[str]:
    """Delete the bench's consumer groups; returns those still there."""
    assert all(g.startswith("bench") for g in groups)
    return await kafka_delete_groups(cfg, groups)


# ---- 1. load ---------------------------------------------------------------------------------


async def ensure_loaded(n: int, skip_load: bool) -> tuple[Dataset, Metrics]:
    prefix = f"bench.{n}."  # one prefix per N, so data sets of different sizes never mix
    cfg = settings_for(prefix)
    marker = BENCH / f".loaded-{n}.json"
    begins, ends = await offsets(cfg, Topics(prefix).sources)
    held = sum(ends.values()) - sum(begins.values())
    ds = Dataset.read(marker)
    if ds is not None and ds.prefix == prefix and ds.events == n and held == n:
        log(f"{n:,} events already loaded under {prefix}*")
        return ds, {}
    if skip_load:
        raise BenchError(
            f"--skip-load, but {prefix}* holds {held:,} events, not {n:,} "
            f"(or bench/{marker.name} is missing)"
        )
    await delete_topics(cfg, [prefix])  # a partial or unknown load: start over
    log(f"generating {n:,} events")
    t0 = time.perf_counter()
    end_ms = int(time.time()) // 60 * 60_000
    records = make_records(n, end_ms)
    generated = time.perf_counter() - t0
    companies = {
        (r["app_id"], r["company"]["id"])
        for r in records
        if r["type"] == "identify" and (r.get("company") or {}).get("id")
    }
    ds = Dataset(
        prefix,
        n,
        SEED,
        end_ms,
        sorted({(r["app_id"], r["user_id"]) for r in records}),
        sorted(companies),
    )
    log(f"publishing {n:,} events to {prefix}*")
    t0 = time.perf_counter()
    await send_records(records, cfg, PublishReport())  # generated records are valid already
    published = time.perf_counter() - t0
    del records
    begins, ends = await offsets(cfg, Topics(prefix).sources)
    if sum(ends.values()) - sum(begins.values()) != n:
        raise BenchError(f"published {n:,} events but {prefix}* does not hold exactly that many")
    marker.write_text(json.dumps(dataclasses.asdict(ds)))
    return ds, {
        "load_generate": (generated, "s"),
        "load_publish": (published, "s"),
        "load_rate": (n / published, "events/s"),
    }


# ---- 2a. floor -------------------------------------------------------------------------------


async def floor(cfg: Settings, n: int) -> Metrics:
    """Read every source record from the beginning and decode it: what no pipeline can beat.

    Right after an earlier run's clean-up the broker has once answered end offsets of 0 (an
    empty read); such a read is taken again, up to three times."""
    for attempt in range(3):
        try:
            return await _floor(cfg, n)
        except BenchError as exc:
            if attempt == 2 or "read 0 records" not in str(exc):
                raise
            log(f"{exc}; reading again")
            await asyncio.sleep(2)
    raise AssertionError("unreachable")


async def _floor(cfg: Settings, n: int) -> Metrics:
    tps = await partitions(cfg, Topics(cfg.topic_prefix).sources)
    consumer = AIOKafkaConsumer(**client_options(cfg), enable_auto_commit=False)
    await consumer.start()
    sample: list[dict[str, Any]] = []
    try:
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        await consumer.seek_to_beginning(*tps)
        left = {tp for tp in tps if await consumer.position(tp) < ends[tp]}
        limits, count = cfg.limits, 0
        t0 = time.perf_counter()
        while left:
            checkpoint()
            batch = await consumer.getmany(timeout_ms=500, max_records=10_000)
            for tp, messages in batch.items():
                for m in messages:
                    obj = decode_bytes(m.value or b"", limits)
                    if len(sample) < VALIDATE_SAMPLE:
                        sample.append(obj)
                count += len(messages)
                if messages and messages[-1].offset + 1 >= ends[tp]:
                    left.discard(tp)
        seconds = time.perf_counter() - t0
    finally:
        await consumer.stop()
    if count != n:
        raise BenchError(f"the floor read {count:,} records, expected {n:,}")
    # The worker also validates every record (pydantic) before folding: its cost per record.
    now_ms = int(time.time() * 1000)
    t0 = time.perf_counter()
    for obj in sample:
        validate(obj, cfg.limits, now_ms)
    validated = time.perf_counter() - t0
    return {
        "floor_seconds": (seconds, "s"),
        "floor_rate": (n / seconds, "events/s"),
        "validate_rate": (len(sample) / validated, "events/s"),
    }


# ---- 2b. pipeline ----------------------------------------------------------------------------


def start_workers(run: Run, cfg: Settings, count: int) -> list[subprocess.Popen[bytes]]:
    procs = []
    for i in range(count):
        env = {
            **os.environ,
            "PROFILES_TOPIC_PREFIX": cfg.topic_prefix,
            "PROFILES_NAMESPACE": cfg.namespace,
            "PROFILES_GROUP_ID": cfg.group_id,
            "PROFILES_DATADIR": str(run.tmp / f"{cfg.group_id}-{i}"),
        }
        path = run.tmp / f"{cfg.group_id}-{i}.log"
        with open(path, "wb") as out:
            # Its own session: a Ctrl-C reaches only us, and our cleanup stops the workers.
            proc = subprocess.Popen(
                [str(PROFILES), "worker"],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        run.workers[proc] = path
        procs.append(proc)
    return procs


def stop_workers(run: Run, procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        run.workers.pop(proc, None)


def cpu_seconds(proc: subprocess.Popen[bytes]) -> float:
    """User + system CPU of a live process so far (Linux /proc)."""
    try:
        fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_cpu() -> float:
    """CPU seconds every process of this machine has used so far, all cores (Linux /proc):
    against the wall time, how busy the shared machine was."""
    try:
        ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0.0
    idle = ticks[3] + ticks[4]  # idle, iowait
    return (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")  # without guest (in user)


def summed(info: dict[str, Any], *fields: str) -> float:
    """INFO fields of one Redis, or summed over the nodes of a cluster (one dict per node)."""
    nodes = [info] if fields[0] in info else [v for v in info.values() if isinstance(v, dict)]
    return sum(float(node[f]) for node in nodes for f in fields)


async def info(rc: aioredis.Redis, section: str) -> dict[str, Any]:
    """INFO of one Redis, or of every node of a cluster (one dict per node)."""
    if isinstance(rc, aioredis.cluster.RedisCluster):
        return dict(await rc.info(section, target_nodes=aioredis.cluster.RedisCluster.ALL_NODES))
    return dict(await rc.info(section))


async def redis_cpu(rc: aioredis.Redis) -> float:
    """Redis server CPU so far, all nodes (it serves the other users of this machine too)."""
    return summed(await info(rc, "cpu"), "used_cpu_user", "used_cpu_sys")


def check_alive(run: Run, procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is not None:
            lines = run.workers[proc].read_text(errors="replace").strip().splitlines()
            last = lines[-1] if lines else "no output"
            raise BenchError(f"a worker exited with code {proc.returncode}: {last}")


class Lag:
    """One group's lag and progress, as `profiles status` counts them, on clients kept open:
    pipeline_status opens three per call, which 4 times a second would load the measured cores."""

    def __init__(self, cfg: Settings) -> None:
        self.cfg = cfg
        self.topics = Topics(cfg.topic_prefix)
        self.admin = AIOKafkaAdminClient(**client_options(cfg))
        self.consumer = AIOKafkaConsumer(**client_options(cfg), enable_auto_commit=False)
        self.tps: list[TopicPartition] = []
        self.begins: dict[TopicPartition, int] = {}

    async def start(self) -> None:
        await self.admin.start()
        await self.consumer.start()
        t = self.topics
        self.tps = await partitions(self.cfg, [*t.sources, t.company_deltas, t.segments])
        self.begins = await self.consumer.beginning_offsets(self.tps)

    async def stop(self) -> None:
        await self.consumer.stop()
        await self.admin.close()

    async def poll(self) -> tuple[int, int]:
        """(lag over every partition the group consumes, source records committed)."""
        try:
            committed = await self.admin.list_consumer_group_offsets(self.cfg.group_id)
        except KafkaError:  # no group yet
            committed = {}
        # End offsets after the commits: a delta sent in between is counted, never missed.
        ends = await self.consumer.end_offsets(self.tps)
        lag = done = 0
        for tp in self.tps:
            meta = committed.get(tp)
            position = meta.offset if meta is not None and meta.offset >= 0 else self.begins[tp]
            lag += max(0, ends[tp] - position)
            if tp.topic in self.topics.sources:
                done += max(0, position - self.begins[tp])
        return lag, done


async def wait_caught_up(
    run: Run, cfg: Settings, procs: list[subprocess.Popen[bytes]], t0: float
) -> tuple[float, float | None, int]:
    """(seconds until lag 0, seconds until the first commit, records committed by then)."""
    lag = Lag(cfg)
    await lag.start()
    try:
        startup: float | None = None
        at_startup = last_done = 0
        last_change = time.monotonic()
        while True:
            checkpoint()
            check_alive(run, procs)
            behind, done = await lag.poll()
            now = time.monotonic()
            if startup is None and done > 0:
                startup, at_startup = now - t0, done
            if behind == 0 and done > 0:
                return now - t0, startup, at_startup
            if done != last_done:
                last_done, last_change = done, now
            elif now - last_change > STALL_SECONDS:
                raise BenchError(f"no progress for {STALL_SECONDS} s (lag {behind:,})")
            await asyncio.sleep(POLL_SECONDS)
    finally:
        await lag.stop()


async def used_memory(rc: aioredis.Redis) -> int:
    return int(summed(await info(rc, "memory"), "used_memory"))


async def pipeline(run: Run, ds: Dataset, count: int, rc: aioredis.Redis) -> Metrics:
    """`count` workers on a fresh group and namespace, from start until the lag is 0."""
    name = run.name(f"w{count}")
    run.namespaces.append(name)
    run.groups.append(name)
    cfg = settings_for(ds.prefix, name, name)
    await truncate(cfg)
    before, redis_before = await used_memory(rc), await redis_cpu(rc)
    log(f"pipeline: {count} worker(s), group and namespace {name}")
    t0 = time.monotonic()
    procs = start_workers(run, cfg, count)
    try:
        total, startup, at_startup = await wait_caught_up(run, cfg, procs, t0)
        workers_cpu = sum(cpu_seconds(proc) for proc in procs)  # start-up included
        redis_used = await redis_cpu(rc) - redis_before
    finally:
        stop_workers(run, procs)
    lag = (await pipeline_status(cfg))["lag"]
    if lag:
        raise BenchError(f"profiles status says lag {lag} after the pipeline caught up")
    p = f"pipeline_{count}w_"
    out: Metrics = {
        p + "seconds": (total, "s"),
        p + "rate": (ds.events / total, "events/s"),
        p + "startup": (startup, "s"),
        p + "rate_excl_startup": (None, "events/s"),
        p + "used_memory_delta": (await used_memory(rc) - before, "bytes"),
        p + "workers_cpu": (workers_cpu, "s"),
        p + "redis_cpu": (redis_used, "s"),
    }
    if startup is not None and total > startup:
        out[p + "rate_excl_startup"] = ((ds.events - at_startup) / (total - startup), "events/s")
    return out


# ---- 2c. replay ------------------------------------------------------------------------------


async def replay(run: Run, ds: Dataset, rc: aioredis.Redis) -> Metrics:
    name = run.name("replay")
    run.namespaces.append(name)
    run.groups.append(name)
    cfg = settings_for(ds.prefix, name, name)
    log(f"replay into {name}")
    t0, cpu0, redis0 = time.perf_counter(), time.process_time(), await redis_cpu(rc)
    progress = await rebuild(cfg, rc, name, group=name, report=lambda _p: checkpoint())
    seconds = time.perf_counter() - t0
    cpu, redis_used = time.process_time() - cpu0, await redis_cpu(rc) - redis0
    if progress.done != ds.events:
        raise BenchError(f"replay folded {progress.done:,} records, expected {ds.events:,}")
    return {
        "replay_seconds": (seconds, "s"),
        "replay_rate": (ds.events / seconds, "events/s"),
        "replay_cpu": (cpu, "s"),
        "replay_redis_cpu": (redis_used, "s"),
    }


# ---- 2d. reads, 2e. memory -------------------------------------------------------------------


def day(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d")


def quantiles(values: list[float]) -> tuple[float, float]:
    """(p50, p99)."""
    q = statistics.quantiles(values, n=100, method="inclusive")
    return q[49], q[98]


def reads(reader: Reader, ds: Dataset, count: int) -> Metrics:
    """p50/p99 of random reads of each view through the reader library."""
    rng = random.Random(SEED)
    frm, to = day(ds.end_ms - 60 * DAY_MS), day(ds.end_ms - 1)  # the data's last 60 days
    apps = sorted({app for app, _ in ds.users})
    calls: dict[str, Callable[[], Any]] = {
        "user": lambda: reader.user(*rng.choice(ds.users), frm=frm, to=to),
        "sessions": lambda: reader.sessions(*rng.choice(ds.users)),
        "company": lambda: reader.company(*rng.choice(ds.companies), frm=frm, to=to),
        "users_list": lambda: reader.users(rng.choice(apps), sort="last_seen", limit=50),
    }
    out: Metrics = {}
    for view, call in calls.items():
        if view == "company" and not ds.companies:
            continue
        times = []
        for _ in range(count):
            checkpoint()
            t0 = time.perf_counter()
            call()  # the random pick inside is a microsecond next to a Redis round trip
            times.append(time.perf_counter() - t0)
        p50, p99 = quantiles(times)
        out[f"read_{view}_p50"] = (p50 * 1000, "ms")
        out[f"read_{view}_p99"] = (p99 * 1000, "ms")
    return out


async def namespace_memory(rc: aioredis.Redis, ds: Dataset, namespace: str) -> Metrics:
    found = [k async for k in rc.scan_iter(match=keys.namespace_pattern(namespace), count=1000)]
    total = 0
    for i in range(0, len(found), 1000):
        pipe = rc.pipeline(transaction=False)
        for key in found[i : i + 1000]:
            pipe.memory_usage(key, samples=0)
        total += sum(v or 0 for v in await pipe.execute())
    return {
        "memory_keys": (len(found), "keys"),
        "memory_bytes": (total, "bytes"),
        "memory_per_user": (total / max(1, len(ds.users)), "bytes"),
        "memory_per_event": (total / ds.events, "bytes"),
    }


# ---- 2f. freshness ---------------------------------------------------------------------------


def visible(reader: Reader, app: str, user: str, name: str, at_ms: int) -> bool:
    # The overview of the probe's own day only: the watcher polls every pending probe, and a
    # whole-history read each time would take the CPU the worker is being measured on.
    d = day(at_ms)
    top = reader.user(app, user, frm=d, to=d, search=name)["overview"]["top_events"]
    return any(e["name"] == name for e in top)


async def until(moment: float) -> None:
    await asyncio.sleep(max(0.0, moment - time.monotonic()))


@dataclass
class Steady:
    """What a steady load measured."""

    sent: int
    seconds: float
    latencies: list[float]  # of the probes seen, in seconds
    lost: int  # probes not seen within 30 s of the load's end
    lag_start: int  # the group's lag from 2 to 5 s in (mean of samples every 0.5 s)
    lag_end: int  # its lag in the load's last 3 s (the same)
    workers_cpu: float  # the workers' CPU seconds while the load ran
    own_cpu: float  # this process's (the load and the probes), the same
    machine_cpu: float  # every process's, the same


class LiveLoad:
    """New track events for existing users at a steady rate, with probe events timed from
    publish until the reader library shows them: the freshness and live parts.

    The load goes to topics of its own (the same namespace, so the same stored profiles): on
    the loaded topics it would change the data set every later run measures."""

    PROBES_PER_SECOND = 10
    WATCH_SECONDS = 0.05  # the shortest round of reads of the pending probes
    LAG_SAMPLE_SECONDS = 0.5

    def __init__(
        self,
        run: Run,
        cfg: Settings,
        procs: list[subprocess.Popen[bytes]],
        users: list[tuple[str, str]],
        end_ms: int,
    ) -> None:
        self.run, self.cfg, self.procs, self.users = run, cfg, procs, users
        self.reader = Reader(sync_client(cfg), cfg.namespace)
        self.topic = Topics(cfg.topic_prefix).for_type("track")
        self.rng = random.Random(SEED)
        self.templates = [
            r for r in generate(users=50, days=1, end_ms=end_ms, seed=SEED) if r["type"] == "track"
        ]
        self.producer = AIOKafkaProducer(
            **client_options(cfg), acks="all", enable_idempotence=True, linger_ms=5
        )
        self.probes = 0  # probe names are unique over the loads of one LiveLoad

    async def __aenter__(self) -> LiveLoad:
        await self.producer.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.producer.stop()

    def track(self, app: str, user: str, name: str | None = None) -> dict[str, Any]:
        base = self.rng.choice(self.templates) if name is None else {"type": "track", "name": name}
        ids = {"app_id": app, "user_id": user, "event_id": str(uuid.uuid4())}
        return {**base, **ids, "timestamp": int(time.time() * 1000)}

    async def send(self, record: dict[str, Any]) -> asyncio.Future[Any]:
        key = record_key(record["app_id"], record["user_id"])
        return await self.producer.send(self.topic, encode(record), key=key)

    async def warm_up(self) -> None:
        """Until the workers have joined and own their partitions: one probe shows."""
        app, user = self.rng.choice(self.users)
        warmup = self.track(app, user, f"bench-warmup-{self.run.id}")
        await self.send(warmup)
        deadline = time.monotonic() + 120
        while not visible(self.reader, app, user, warmup["name"], warmup["timestamp"]):
            checkpoint()
            check_alive(self.run, self.procs)
            if time.monotonic() > deadline:
                raise BenchError("the worker showed nothing within 120 s")
            await asyncio.sleep(0.1)

    async def steady(self, rate: float, seconds: float) -> Steady:
        """`rate` events a second for `seconds`, random users, and ten probes a second."""
        started = time.monotonic()
        stop_at = started + seconds
        cpu_before = sum(cpu_seconds(p) for p in self.procs)
        own_before, machine_before = time.process_time(), machine_cpu()
        pending: dict[str, tuple[str, str, int, float]] = {}
        latencies: list[float] = []

        async def load() -> int:
            sent, futures = 0, []
            while (now := time.monotonic()) < stop_at:
                checkpoint()
                due = int((now - started) * rate) - sent
                for _ in range(due):
                    futures.append(await self.send(self.track(*self.rng.choice(self.users))))
                sent += due
                if len(futures) >= 5000:
                    await asyncio.gather(*futures)
                    futures.clear()
                await asyncio.sleep(0.02)
            await asyncio.gather(*futures)
            return sent

        async def probes() -> None:
            while time.monotonic() < stop_at:
                checkpoint()
                app, user = self.rng.choice(self.users)
                name = f"bench-probe-{self.run.id}-{self.probes}"
                probe = self.track(app, user, name)
                pending[name] = (app, user, probe["timestamp"], time.monotonic())
                await self.send(probe)
                self.probes += 1
                await asyncio.sleep(1 / self.PROBES_PER_SECOND)

        async def watch() -> None:
            give_up = stop_at + 30
            while time.monotonic() < give_up and (pending or time.monotonic() < stop_at):
                round_start = time.monotonic()
                for name, (app, user, at_ms, sent_at) in list(pending.items()):
                    seen = time.monotonic()  # it became visible at most this read ago
                    if visible(self.reader, app, user, name, at_ms):
                        latencies.append(seen - sent_at)
                        del pending[name]
                checkpoint()
                check_alive(self.run, self.procs)
                # Each pending probe is read every round: rounds of at least 50 ms keep the
                # reads from taking the CPU the worker is being measured on.
                await until(max(time.monotonic() + 0.01, round_start + self.WATCH_SECONDS))

        async def lags() -> tuple[int, int, tuple[float, float, float]]:
            # Means of the samples of a 3-second window (every 0.5 s): committed offsets
            # move once a second (broker_commit_interval), so one sample is a sawtooth's.
            lag = Lag(self.cfg)
            await lag.start()
            try:
                first = (started + min(2.0, seconds / 5), started + min(5.0, seconds / 2))
                last = (max(first[1], stop_at - 3.0), stop_at)
                early: list[int] = []
                late: list[int] = []
                at = first[0]
                while at <= stop_at + 1e-9:
                    await until(at)
                    behind = (await lag.poll())[0]
                    if at <= first[1] + 1e-9:
                        early.append(behind)
                    if at >= last[0] - 1e-9:
                        late.append(behind)
                    at += self.LAG_SAMPLE_SECONDS
                cpu = (
                    sum(cpu_seconds(p) for p in self.procs) - cpu_before,
                    time.process_time() - own_before,
                    machine_cpu() - machine_before,
                )
                return round(statistics.mean(early)), round(statistics.mean(late)), cpu
            finally:
                await lag.stop()

        sent, _, _, (lag_start, lag_end, cpu) = await asyncio.gather(
            load(), probes(), watch(), lags()
        )
        return Steady(sent, seconds, latencies, len(pending), lag_start, lag_end, *cpu)


async def freshness(run: Run, ds: Dataset, namespace: str, rate: float, seconds: float) -> Metrics:
    """Probe events under a steady load: seconds from publish until the reader shows them."""
    prefix = f"bench.fresh-{run.id}."
    run.topic_prefixes.append(prefix)
    group = run.name("fresh")
    run.groups.append(group)
    cfg = settings_for(prefix, namespace, group)
    await ensure_topics(cfg)
    log(f"freshness: {rate:,.0f} events/s for {seconds:g} s into {namespace}")
    procs = start_workers(run, cfg, 1)
    try:
        async with LiveLoad(run, cfg, procs, ds.users, ds.end_ms) as load:
            await load.warm_up()
            steady = await load.steady(rate, seconds)
    finally:
        stop_workers(run, procs)
    if len(steady.latencies) < 2:
        raise BenchError(f"only {len(steady.latencies)} freshness probes became visible")
    p50, p99 = quantiles(steady.latencies)
    return {
        "freshness_load": (steady.sent / seconds, "events/s"),
        "freshness_probes": (len(steady.latencies) + steady.lost, "probes"),
        "freshness_lost": (steady.lost, "probes"),
        "freshness_lag_at_end": (steady.lag_end, "events"),
        "freshness_p50": (p50, "s"),
        "freshness_p99": (p99, "s"),
    }


# ---- the run ---------------------------------------------------------------------------------


async def preflight(cfg: Settings, rc: aioredis.Redis) -> None:
    try:
        await rc.ping()
    except redis.RedisError as exc:
        raise BenchError(
            f"Redis at {cfg.redis_url} unreachable ({exc}); scripts/services up"
        ) from None
    admin = AIOKafkaAdminClient(**client_options(cfg))
    try:
        await admin.start()
    except KafkaError as exc:
        raise BenchError(
            f"Kafka at {cfg.kafka_bootstrap} unreachable ({exc}); scripts/services up"
        ) from None
    finally:
        with contextlib.suppress(Exception):
            await admin.close()


async def cleanup(run: Run, rc: aioredis.Redis) -> None:
    """Stop workers, remove the measured namespaces, groups and scratch topics; keep the data."""
    stop_workers(run, list(run.workers))
    if not run.groups:  # failed before it made anything
        shutil.rmtree(run.tmp, ignore_errors=True)
        return
    try:
        for namespace in run.namespaces:
            await remove_namespace(rc, namespace)
            await rc.unlink(keys.pointer(namespace))  # outside the namespace's own keys
        cfg = settings_for("bench.")
        left = await delete_groups(cfg, run.groups)
        if left:
            log(f"consumer groups not deleted: {', '.join(left)}")
        # Faust makes a leader topic per app id (our group id).
        leaders = [f"{g}-__assignor-__leader" for g in run.groups]
        await delete_topics(cfg, run.topic_prefixes + leaders)
    except Exception as exc:
        log(f"cleanup incomplete: {type(exc).__name__}: {exc}")
    shutil.rmtree(run.tmp, ignore_errors=True)


async def bench(args: argparse.Namespace) -> tuple[Dataset, Metrics]:
    cfg = settings_for(f"bench.{args.events}.")
    rc = async_client(cfg)
    run = Run()
    try:
        await preflight(cfg, rc)
        ds, metrics = await ensure_loaded(args.events, args.skip_load)
        checkpoint()
        log("floor")
        metrics |= await floor(cfg, ds.events)
        if "faust-floor" in args.only:
            from bench.faust_floor import faust_floor

            log("faust-floor: a Faust agent with the worker's settings that only decodes")
            ff = await asyncio.to_thread(faust_floor, args.events)
            metrics["faust_floor_rate"] = (ff["rate"], "events/s")
            metrics["faust_floor_cpu"] = (ff["process_cpu"], "s")
        if "pipeline" in args.only:
            metrics |= await pipeline(run, ds, 1, rc)
            one = run.name("w1")
            log(f"reads: {args.reads:,} of each view")
            client = sync_client(cfg)
            metrics |= reads(Reader(client, one), ds, args.reads)
            metrics |= await namespace_memory(rc, ds, one)
            steady = metrics["pipeline_1w_rate_excl_startup"][0] or metrics["pipeline_1w_rate"][0]
            metrics |= await freshness(run, ds, one, steady / 2, args.fresh_seconds)
        if "workers" in args.only:
            for count in range(2, args.workers_max + 1):
                checkpoint()
                metrics |= await pipeline(run, ds, count, rc)
        if "replay" in args.only:
            checkpoint()
            metrics |= await replay(run, ds, rc)
        # Imported here: they import this module's helpers.
        from bench import live, trickle

        if "trickle" in args.only:
            checkpoint()
            metrics |= await trickle.measure(
                run, rc, args.trickle_histories, args.trickle_rate, args.trickle_seconds
            )
        if "live" in args.only:
            checkpoint()
            if "pipeline" not in args.only:  # live needs the data set's folded profiles
                log("live: folding the data set first (not reported)")
                await pipeline(run, ds, 1, rc)
            rates = [int(r) for r in args.live_rates.split(",")]
            metrics |= await live.measure(run, ds, rc, run.name("w1"), rates, args.live_seconds)
    finally:
        await cleanup(run, rc)
        await rc.aclose()
    floor_rate = metrics["floor_rate"][0]
    for count in range(1, args.workers_max + 1):
        p = f"pipeline_{count}w_"
        if p + "rate" not in metrics:
            continue
        metrics[p + "vs_floor"] = (metrics[p + "rate"][0] / floor_rate, "ratio")
        if metrics[p + "rate_excl_startup"][0]:
            steady = metrics[p + "rate_excl_startup"][0]
            metrics[p + "excl_startup_vs_floor"] = (steady / floor_rate, "ratio")
    if "replay_rate" in metrics:
        metrics["replay_vs_floor"] = (metrics["replay_rate"][0] / floor_rate, "ratio")
    if "faust_floor_rate" in metrics:
        metrics["faust_floor_vs_floor"] = (metrics["faust_floor_rate"][0] / floor_rate, "ratio")
        if "pipeline_1w_rate" in metrics:
            steady = metrics["pipeline_1w_rate_excl_startup"][0] or metrics["pipeline_1w_rate"][0]
            ratio = steady / metrics["faust_floor_rate"][0]
            metrics["pipeline_1w_vs_faust_floor"] = (ratio, "ratio")
    if "live_sustainable_rate" in metrics:
        # against the 1-worker pipeline's steady rate (start-up excluded), when it ran
        bulk = None
        if "pipeline" in args.only:
            bulk = metrics["pipeline_1w_rate_excl_startup"][0] or metrics["pipeline_1w_rate"][0]
        for which in ("sustainable", "flat"):
            live_rate = metrics[f"live_{which}_rate"][0]
            ratio = live_rate / bulk if live_rate is not None and bulk else None
            metrics[f"live_{which}_vs_pipeline"] = (ratio, "ratio")
    return ds, metrics


def git(*argv: str) -> str:
    try:
        done = subprocess.run(["git", *argv], cwd=BENCH.parent, capture_output=True, text=True)
    except OSError:
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


def show(value: Any, unit: str) -> str:
    if value is None:
        return "n/a" if unit == "ratio" else "-"
    if unit == "flag":
        return "yes" if value else "no"
    if unit in ("events/s", "events", "bytes", "keys", "probes", "users"):
        return f"{value:,.0f}"
    return f"{value:,.3f}" if unit == "ratio" else f"{value:,.2f}"


def report(ds: Dataset, metrics: Metrics, out: Path, code: tuple[str, bool]) -> None:
    width = max(len(name) for name in metrics)
    print(f"{'metric':<{width}}  {'value':>14}  unit")
    for name, (value, unit) in metrics.items():
        print(f"{name:<{width}}  {show(value, unit):>14}  {unit}")
    result = {
        "commit": code[0],  # when the run started: the code the workers ran
        "dirty": code[1],
        "events": ds.events,
        "users": len(ds.users),
        "companies": len(ds.companies),
        "prefix": ds.prefix,
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "cores": os.cpu_count(),
        "redis": "cluster" if settings_for("bench.").redis_cluster else "standalone",
        "loadavg": os.getloadavg(),
        "metrics": {name: {"value": v, "unit": u} for name, (v, u) in metrics.items()},
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwritten to {out}")


def main(argv: list[str] | None = None) -> int:
    from bench import live, trickle  # here: they import this module's helpers

    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--skip-load", action="store_true", help="fail rather than load")
    parser.add_argument("--out", type=Path, default=BENCH / "results" / "latest.json")
    parser.add_argument("--workers-max", type=int, default=2)
    parser.add_argument("--reads", type=int, default=10_000, help="reads of each view")
    parser.add_argument("--fresh-seconds", type=float, default=20.0)
    parser.add_argument(
        "--trickle-histories",
        default=trickle.HISTORIES,
        help="trickle: history lengths and users, H:USERS,... (default %(default)s)",
    )
    parser.add_argument("--trickle-rate", type=float, default=250.0, help="events/s")
    parser.add_argument("--trickle-seconds", type=float, default=25.0)
    parser.add_argument(
        "--live-rates", default=live.RATES, help="live: events/s, stepped up in this order"
    )
    parser.add_argument("--live-seconds", type=float, default=20.0, help="live: each step")
    parser.add_argument(
        "--only",
        default=",".join(PARTS),
        help="comma-separated parts to measure besides the floor: faust-floor (a Faust agent"
        " with the worker's settings that only decodes), pipeline (1 worker, then"
        " its reads, memory and freshness), workers (2..--workers-max), replay, trickle (one"
        " new event per step for users with long histories), live (freshness and lag at"
        " stepped rates); default all",
    )
    args = parser.parse_args(argv)
    args.only = set(args.only.split(","))
    if not args.only <= set(PARTS):
        parser.error(f"--only takes some of {', '.join(PARTS)}")
    if args.events < 1 or args.workers_max < 1 or args.reads < 2:
        parser.error("--events and --workers-max must be >= 1, --reads >= 2")
    try:
        trickle.parse_histories(args.trickle_histories)
        if any(int(r) < 1 for r in args.live_rates.split(",")):
            raise ValueError(args.live_rates)
    except ValueError:
        parser.error("--trickle-histories takes H:USERS,... and --live-rates N,... (both >= 1)")
    if min(args.trickle_rate, args.trickle_seconds, args.live_seconds) <= 0:
        parser.error("--trickle-rate, --trickle-seconds and --live-seconds must be > 0")
    # aiokafka logs each retried request and failed connection; what matters is reported here.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    code = (git("rev-parse", "--short", "HEAD") or "unknown", bool(git("status", "--porcelain")))
    try:
        ds, metrics = asyncio.run(bench(args))
    except (KeyboardInterrupt, Interrupted):
        log("interrupted")
        return 130
    except BenchError as exc:
        log(str(exc))
        return 1
    except ValidationError as exc:
        first = exc.errors()[0]
        log(f"bad setting PROFILES_{str(first['loc'][0]).upper()}: {first['msg']}")
        return 2
    except Exception as exc:  # a service gone mid-run and the like: one line, no traceback
        log(f"{type(exc).__name__}: {exc}".splitlines()[0])
        return 2
    report(ds, metrics, args.out, code)
    return 0


if __name__ == "__main__":
    # `python -m bench.run` runs this file as __main__, and bench/trickle.py and bench/live.py
    # import bench.run: run that module's main, so that there is one signal flag and one
    # BenchError class, not one in each copy.
    from bench.run import main as entry

    sys.exit(entry())
