"""faust-floor: what Faust itself costs per message, next to the aiokafka floor of the same data.

A Faust app built with the worker's own settings (`streams.app.app_options`) runs one agent
over the source topics, concurrency 1, `take_events(batch_size, batch_seconds)` like the user
agent; its body only decodes each record with the project's codec and counts. It reads N
pre-loaded events (topics `bench.ff.<N>.*`, loaded once from the generator) from a fresh
consumer group. The aiokafka floor (`getmany` + the same decoding) reads the same topics, so
the ratio of the two is what Faust's per-message machinery costs.

    python -m bench.faust_floor --events 100000            # faust-floor, then the aiokafka floor
    python -m bench.faust_floor --repeat 3 --option stream_buffer_maxsize=50000
    python -m bench.faust_floor --app faust:App --loop asyncio --option broker_max_poll_records=null
        --option Monitor=faust.sensors:Monitor --option Schema=faust.serializers.schemas:Schema
                                                   # (one line) Faust as before streams/faust_light

Events/s and CPU are taken from the first batch to the last (start-up and the group join are
left out; `process_cpu` is the whole child process, start-up included). The machine is shared:
events/s swing by a factor of two between runs, CPU seconds per 100,000 events by about 5 %;
compare those. The Faust app runs in a child process (`--child`), as `profiles worker` does;
`faust_floor()` and `aiokafka_floor()` return the figures for bench/run.py.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer

from bench.data import make_records
from bench.topics import delete_topics
from schemas.codec import decode, decode_bytes
from schemas.limits import Limits
from streams.kafka import client_options, delete_groups, partitions
from streams.publish import PublishReport, send_records
from streams.settings import Settings
from streams.topics import Topics

ROOT = Path(__file__).resolve().parent.parent
STALL_SECONDS = 120  # a child with no result by then is stuck

Decoder = Callable[[bytes, Limits, int], Any]
DECODERS: dict[str, Decoder] = {
    # What bench/run.py's floor does: msgpack + the shape limits.
    "bytes": lambda raw, limits, _now: decode_bytes(raw, limits),
    # What the worker does to every record: the above, then the schema (pydantic).
    "full": decode,
}


def log(message: str) -> None:
    print(f"faust-floor: {message}", file=sys.stderr, flush=True)


def settings_for(n: int, group: str = "bench-ff") -> Settings:
    prefix = f"bench.ff.{n}."
    assert group.startswith("bench")
    return Settings(topic_prefix=prefix, namespace="bench", group_id=group)


# ---- the data --------------------------------------------------------------------------------


async def held(cfg: Settings) -> int:
    tps = await partitions(cfg, Topics(cfg.topic_prefix).sources)
    if not tps:
        return 0
    consumer = AIOKafkaConsumer(**client_options(cfg), enable_auto_commit=False)
    await consumer.start()
    try:
        begins, ends = await consumer.beginning_offsets(tps), await consumer.end_offsets(tps)
    finally:
        await consumer.stop()
    return sum(ends.values()) - sum(begins.values())


async def ensure_loaded(n: int) -> Settings:
    """`bench.ff.<n>.*` holding exactly n generated events (loaded once, reused after)."""
    cfg = settings_for(n)
    if await held(cfg) == n:
        return cfg
    await delete_topics(cfg, [cfg.topic_prefix])  # partial: start over
    log(f"loading {n:,} generated events into {cfg.topic_prefix}*")
    records = make_records(n, int(time.time()) // 60 * 60_000)
    await send_records(records, cfg, PublishReport())
    if (found := await held(cfg)) != n:
        raise RuntimeError(f"{cfg.topic_prefix}* holds {found:,} events, not {n:,}")
    return cfg


# ---- the aiokafka floor ----------------------------------------------------------------------


async def aiokafka_floor(n: int, decoder: str = "bytes") -> dict[str, float]:
    """getmany + decoding every record, nothing else: bench/run.py's floor, with its CPU.

    The broker has answered end offsets of 0 right after a group's clean-up (bench/run.py
    saw it too): such an empty read is taken again, up to three times."""
    cfg = await ensure_loaded(n)
    for _attempt in range(2):
        figures = await _aiokafka_floor(cfg, n, decoder)
        if figures["events"]:
            return figures
        await asyncio.sleep(2)
    return await _aiokafka_floor(cfg, n, decoder)


async def _aiokafka_floor(cfg: Settings, n: int, decoder: str) -> dict[str, float]:
    decode_one, limits = DECODERS[decoder], cfg.limits
    tps = await partitions(cfg, Topics(cfg.topic_prefix).sources)
    consumer = AIOKafkaConsumer(**client_options(cfg), enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        await consumer.seek_to_beginning(*tps)
        left = {tp for tp in tps if await consumer.position(tp) < ends[tp]}
        count = 0
        t0, cpu0 = time.perf_counter(), time.process_time()
        while left:
            batch = await consumer.getmany(timeout_ms=500, max_records=10_000)
            now_ms = int(time.time() * 1000)
            for tp, messages in batch.items():
                for m in messages:
                    decode_one(m.value or b"", limits, now_ms)
                count += len(messages)
                if messages and messages[-1].offset + 1 >= ends[tp]:
                    left.discard(tp)
        seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    finally:
        await consumer.stop()
    if count not in (0, n):
        raise RuntimeError(f"the aiokafka floor read {count:,} records, expected {n:,}")
    if not count:
        return {"events": 0, "seconds": seconds, "rate": 0.0, "cpu": cpu, "cpu_per_100k": 0.0}
    return {
        "events": n,
        "seconds": seconds,
        "rate": n / seconds,
        "cpu": cpu,
        "cpu_per_100k": cpu * 100_000 / n,
    }


# ---- faust-floor -----------------------------------------------------------------------------


def faust_floor(
    n: int,
    *,
    decoder: str = "bytes",
    batch: int | None = None,
    within: float | None = None,
    options: dict[str, Any] | None = None,
    loop: str = "uvloop",
    app: str | None = None,
    wrap: list[str] | None = None,
) -> dict[str, float]:
    """Run the Faust agent over the n events in a child process, on a fresh group.

    Everything is the worker's unless changed: `options` override faust.App settings,
    `batch`/`within` the take_events arguments (the settings' batch_size/batch_seconds), `loop`
    is "uvloop" or "asyncio", `app` the App class ("faust:App" for Faust's own); `wrap`
    prefixes the child's command line (a profiler)."""
    cfg = asyncio.run(ensure_loaded(n))
    group = f"bench-ff-{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory(prefix="bench-ff-") as tmp:
        result = Path(tmp) / "result.json"
        command = [
            *(wrap or []),
            sys.executable,
            "-m",
            "bench.faust_floor",
            "--child",
            "--events",
            str(n),
            "--group",
            group,
            "--decode",
            decoder,
            "--result",
            str(result),
            "--datadir",
            str(Path(tmp) / "faust"),
        ]
        if batch is not None:
            command += ["--batch", str(batch)]
        if within is not None:
            command += ["--within", str(within)]
        command += ["--loop", loop]
        if app is not None:
            command += ["--app", app]
        for key, value in (options or {}).items():
            command += ["--option", f"{key}={json.dumps(value)}"]
        with open(Path(tmp) / "child.log", "wb") as out:
            child = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
        try:
            usage = _wait(child, STALL_SECONDS + n / 500)
            if not result.exists():
                tail = (Path(tmp) / "child.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"faust-floor child gave no result:\n{tail}")
            figures: dict[str, float] = json.loads(result.read_text())
            figures["process_cpu"] = usage.ru_utime + usage.ru_stime
        finally:
            if child.poll() is None:
                child.kill()
            asyncio.run(_clean(cfg, group))
    return figures


def _wait(child: subprocess.Popen[bytes], seconds: float) -> Any:
    """Wait for the child (SIGTERM it after `seconds`); its resource usage, CPU included."""
    deadline = time.monotonic() + seconds
    while True:
        pid, status, usage = os.wait4(child.pid, os.WNOHANG)
        if pid:
            child.returncode = os.waitstatus_to_exitcode(status)
            return usage
        if time.monotonic() > deadline:
            child.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 30
        time.sleep(0.1)


async def _clean(cfg: Settings, group: str) -> None:
    try:
        await delete_groups(cfg, [group])
    finally:
        await delete_topics(cfg, [group + "-"])  # its leader topic


def child(args: argparse.Namespace) -> None:
    """The Faust side, in its own process: the worker's app settings, one counting agent."""
    from streams.faust_light import use_uvloop

    if args.loop == "uvloop":  # as `profiles worker` does
        use_uvloop()
    import faust
    from mode.utils.imports import symbol_by_name

    from streams.app import App, app_options

    cfg = settings_for(args.events, args.group).model_copy(update={"datadir": args.datadir})
    options = {**app_options(cfg), **parse_options(args.option)}
    app_class = symbol_by_name(args.app) if args.app else App
    app = app_class(cfg.group_id, **options)
    source = app.topic(*Topics(cfg.topic_prefix).sources, key_type=bytes, value_type=bytes)
    decode_one, limits = DECODERS[args.decode], cfg.limits
    batch = args.batch or cfg.batch_size
    within = args.within or cfg.batch_seconds
    n = args.events

    @app.agent(source, concurrency=1)
    async def floor(stream: Any) -> None:
        count = first = batches = rejected = 0
        t0 = cpu0 = 0.0
        async for events in stream.take_events(batch, within):
            now_ms = int(time.time() * 1000)
            for event in events:
                try:
                    decode_one(event.message.value or b"", limits, now_ms)
                except Exception:
                    rejected += 1
            count += len(events)
            batches += 1
            if not first:
                first, t0, cpu0 = count, time.perf_counter(), time.process_time()
            if count >= n:
                seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
                figures = {
                    "events": count,
                    "rejected": rejected,
                    "batches": batches,
                    "seconds": seconds,
                    "rate": (count - first) / seconds if seconds else 0.0,
                    "cpu": cpu,
                    "cpu_per_100k": cpu * 100_000 / max(1, count - first),
                }
                Path(args.result).write_text(json.dumps(figures))
                os.kill(os.getpid(), signal.SIGTERM)  # the worker's own graceful stop

    faust.Worker(app, loglevel="warning", quiet=True).execute_from_commandline()


def parse_options(items: list[str]) -> dict[str, Any]:
    """KEY=JSON (or KEY=text) items as faust.App settings."""
    options: dict[str, Any] = {}
    for item in items:
        key, _, raw = item.partition("=")
        try:
            options[key] = json.loads(raw)
        except ValueError:
            options[key] = raw
    return options


# ---- command line ----------------------------------------------------------------------------


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """faust-floor then the aiokafka floor, back to back, `--repeat` times; the medians."""
    runs: list[dict[str, float]] = []
    floors: list[dict[str, float]] = []
    for _ in range(args.repeat):
        runs.append(
            faust_floor(
                args.events,
                decoder=args.decode,
                batch=args.batch,
                within=args.within,
                options=parse_options(args.option),
                loop=args.loop,
                app=args.app,
            )
        )
        if not args.no_floor:
            floors.append(asyncio.run(aiokafka_floor(args.events, args.decode)))
    out: dict[str, Any] = {"faust_floor": median(runs), "runs": runs}
    if floors:
        out["aiokafka_floor"] = median(floors)
        out["floors"] = floors
        out["ratio"] = out["faust_floor"]["rate"] / out["aiokafka_floor"]["rate"]
        out["cpu_ratio"] = (
            out["faust_floor"]["cpu_per_100k"] / out["aiokafka_floor"]["cpu_per_100k"]
        )
    return out


def median(figures: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(f[key] for f in figures) for key in figures[0]}


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.faust_floor",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=1, help="runs of each; medians")
    parser.add_argument("--decode", choices=sorted(DECODERS), default="bytes")
    parser.add_argument("--batch", type=int, help="take_events max (default: batch_size)")
    parser.add_argument("--within", type=float, help="take_events within (batch_seconds)")
    parser.add_argument(
        "--loop", choices=["uvloop", "asyncio"], default="uvloop", help="the worker's: uvloop"
    )
    parser.add_argument("--app", help="the App class, module:Class (the worker's: streams.app.App)")
    parser.add_argument(
        "--option", action="append", default=[], help="KEY=JSON: a faust.App setting"
    )
    parser.add_argument("--no-floor", action="store_true", help="skip the aiokafka floor")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--group", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    parser.add_argument("--datadir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    out = measure(args)
    if args.json:
        print(json.dumps(out, indent=2))
        return
    ff = out["faust_floor"]
    print(
        f"faust-floor    {ff['rate']:9,.0f} events/s  {ff['cpu_per_100k']:5.2f} s CPU per 100k "
        f"(process {ff['process_cpu']:.2f} s, start-up included)"
    )
    if "aiokafka_floor" in out:
        af = out["aiokafka_floor"]
        print(
            f"aiokafka floor {af['rate']:9,.0f} events/s  {af['cpu_per_100k']:5.2f} s CPU per 100k"
        )
        print(
            f"faust-floor / floor: {out['ratio']:.3f} of the rate, {out['cpu_ratio']:.1f} x the CPU"
        )


if __name__ == "__main__":
    main()
