"""The live part: freshness at steady rates stepped up on one worker (issue 18).

One worker folds new events for the data set's users (on top of their folded histories)
at each rate in turn, for a fixed time, with the freshness part's probes. A step's lag is
flat when it ends no higher than it was a few seconds in, give or take the events of a
commit interval and two batch windows: the worker keeps up. Stepping stops at the first
step whose lag grows. The sustainable live rate is the highest rate with a flat lag and a
p99 freshness within P99_TARGET; the flat rate, the highest with a flat lag whatever the
freshness."""

from __future__ import annotations

import time

import redis.asyncio as aioredis

from bench.run import (
    Dataset,
    LiveLoad,
    Metrics,
    Run,
    checkpoint,
    cpu_seconds,
    log,
    quantiles,
    redis_cpu,
    settings_for,
    start_workers,
    stop_workers,
    wait_caught_up,
)
from streams.kafka import ensure_topics

RATES = "125,250,500,1000,2000,4000,8000"
P99_TARGET = 1.0  # seconds
SHORTFALL = 0.95  # a step counts at its rate only if the producer reached this much of it
COMMIT_SECONDS = 1.0  # the worker's broker_commit_interval (streams/app.py)


async def measure(
    run: Run, ds: Dataset, rc: aioredis.Redis, namespace: str, rates: list[int], seconds: float
) -> Metrics:
    prefix = f"bench.live-{run.id}."
    run.topic_prefixes.append(prefix)
    group = run.name("live")
    run.groups.append(group)
    cfg = settings_for(prefix, namespace, group)
    await ensure_topics(cfg)
    # What the lag may gain and still be flat: a commit interval's and two batch windows'
    # worth of events (the lag's sawtooth): over 20 s, a worker ~10 % short of the rate fails.
    slack = COMMIT_SECONDS + 2 * cfg.batch_seconds
    procs = start_workers(run, cfg, 1)
    out: Metrics = {}
    sustainable: int | None = None
    kept_up: int | None = None  # the highest rate with a flat lag, whatever the freshness
    try:
        async with LiveLoad(run, cfg, procs, ds.users, ds.end_ms) as load:
            await load.warm_up()
            for rate in rates:
                checkpoint()
                log(f"live: {rate:,} events/s for {seconds:g} s into {namespace}")
                cpu0, redis0 = cpu_seconds(procs[0]), await redis_cpu(rc)
                steady = await load.steady(rate, seconds)
                flat = steady.lag_end <= steady.lag_start + rate * slack
                reached = steady.sent / seconds >= SHORTFALL * rate
                p50 = p99 = None
                if len(steady.latencies) >= 2:
                    p50, p99 = quantiles(steady.latencies)
                s = f"live_{rate}_"
                out[s + "load"] = (steady.sent / seconds, "events/s")
                out[s + "p50"] = (p50, "s")
                out[s + "p99"] = (p99, "s")
                out[s + "lost"] = (steady.lost, "probes")
                out[s + "lag_start"] = (steady.lag_start, "events")
                out[s + "lag_end"] = (steady.lag_end, "events")
                out[s + "lag_flat"] = (flat, "flag")
                out[s + "worker_busy"] = (steady.workers_cpu / seconds, "cores")
                out[s + "bench_busy"] = (steady.own_cpu / seconds, "cores")
                out[s + "machine_busy"] = (steady.machine_cpu / seconds, "cores")
                if not flat or not reached:
                    if not reached:
                        log(f"live: the producer sent {steady.sent / seconds:,.0f} events/s")
                    break
                t0 = time.monotonic()
                await wait_caught_up(run, cfg, procs, t0)  # every event applied, then the CPU
                cpu, redis_used = cpu_seconds(procs[0]) - cpu0, await redis_cpu(rc) - redis0
                events = steady.sent + len(steady.latencies) + steady.lost  # probes too
                out[s + "worker_cpu"] = (cpu / events * 1e6, "µs/event")
                out[s + "redis_cpu"] = (redis_used / events * 1e6, "µs/event")
                kept_up = rate
                if p99 is not None and p99 <= P99_TARGET and steady.lost == 0:
                    sustainable = rate
    finally:
        stop_workers(run, procs)
    out["live_sustainable_rate"] = (sustainable, "events/s")
    out["live_flat_rate"] = (kept_up, "events/s")
    return out
