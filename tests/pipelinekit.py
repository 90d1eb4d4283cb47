"""An isolated pipeline on real services, driven through its real CLI and worker processes:
its own topic prefix, namespace and consumer group. Used by tests/integration and tests/faults."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import msgpack
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from click.testing import CliRunner

from cli.main import main
from streams.kafka import client_options, ensure_topics
from streams.redis_clients import sync_client
from streams.settings import Settings
from streams.status import pipeline_status
from streams.topics import Topics

ROOT = Path(__file__).resolve().parents[1]
PROFILES = str(Path(sys.executable).with_name("profiles"))


class Pipeline:
    """One isolated pipeline on the shared services, driven through its real CLI."""

    def __init__(self, tmp: Path, services: dict[str, str] | None = None) -> None:
        tag = uuid.uuid4().hex[:10]
        self.tmp = tmp
        self.env = {
            **os.environ,
            **(services or {}),  # where Kafka and Redis are, when not the shared ones
            "PROFILES_TOPIC_PREFIX": f"t{tag}.",
            "PROFILES_NAMESPACE": f"t{tag}",
            "PROFILES_GROUP_ID": f"g{tag}",
            "PROFILES_METRICS_PORT": "0",  # workers side by side: none takes the default port
            "PROFILES_DATADIR": str(tmp / "faust"),
            "PROFILES_PARTITIONS": "4",
        }
        self.workers: list[subprocess.Popen[bytes]] = []
        self.stopped: set[subprocess.Popen[bytes]] = set()  # by the test, not by themselves

    @property
    def settings(self) -> Settings:
        keys = {
            k[len("PROFILES_") :].lower(): v
            for k, v in self.env.items()
            if k.startswith("PROFILES_")
        }
        return Settings(**keys)

    def start_worker(self) -> subprocess.Popen[bytes]:
        log = open(self.tmp / f"worker-{len(self.workers)}.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen(
            [PROFILES, "worker"], env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=self.tmp
        )
        self.workers.append(proc)
        return proc

    def kill(self, proc: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
        proc.send_signal(sig)
        proc.wait(timeout=60)
        self.stopped.add(proc)

    def cli(self, *args: str) -> Any:
        """Run a `profiles` command in-process (the real CLI code) with this pipeline's env."""
        result = CliRunner().invoke(main, list(args), env=self.env, catch_exceptions=False)
        return result

    def cli_json(self, *args: str) -> Any:
        result = self.cli(*args, "--json")
        if result.exit_code != 0:
            return ("exit", result.exit_code)
        return json.loads(result.stdout)

    def publish_file(self, records: list[dict[str, Any]]) -> subprocess.CompletedProcess[str]:
        path = self.tmp / f"publish-{uuid.uuid4().hex[:6]}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
        return subprocess.run(
            [PROFILES, "publish", "--commands", str(path)],  # the data sets hold commands
            env=self.env,
            text=True,
            capture_output=True,
            timeout=300,
        )

    def status(self) -> dict[str, Any]:
        return asyncio.run(pipeline_status(self.settings))

    def wait_idle(self, timeout: float = 240) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            status = self.status()
            if status["lag"] == 0 and status["groups"][0]["processed"] > 0:
                return status
            for proc in self.workers:
                if proc not in self.stopped and proc.poll() is not None:
                    raise AssertionError(f"worker exited with {proc.returncode}")
            assert time.monotonic() < deadline, f"still lagging: {status['lag']}"
            time.sleep(0.5)

    def wait_processed(self, count: int, timeout: float = 120) -> int:
        """Wait until the workers have processed at least `count` records; returns the lag."""
        deadline = time.monotonic() + timeout
        while True:
            status = self.status()
            if status["groups"][0]["processed"] >= count:
                return int(status["lag"])
            assert time.monotonic() < deadline, f"no progress past {count}: {status['lag']}"
            time.sleep(0.2)

    def ingest_with_kills(self, records: list[dict[str, Any]], kills: int, seed: int) -> list[int]:
        """Publish the records in `kills` parts; after each, SIGKILL the worker at a random
        moment soon after it made progress, and start another; returns the lag at each kill."""
        rng = random.Random(seed)
        size = -(-len(records) // kills)
        worker = self.start_worker()
        lag_at_kill = []
        for i in range(kills):
            part = records[i * size : (i + 1) * size]
            watched = self._watch(part)
            published = self.publish_file(part)
            assert published.returncode == 0, published.stderr
            self._wait_written(watched, worker)
            time.sleep(rng.uniform(0.0, 0.1))  # a random moment inside the ingest
            self.kill(worker)
            lag_at_kill.append(self.status()["lag"])
            worker = self.start_worker()
        return lag_at_kill

    def _watch(self, part: list[dict[str, Any]]) -> dict[str, bytes | None]:
        """The version of every user of `part`, before it is published."""
        from projections import keys as k

        ns = self.settings.namespace
        users = sorted({k.user(ns, r["app_id"], r["user_id"]) for r in part})
        client = self.redis()
        return dict(zip(users, [client.hget(u, k.VERSION) for u in users], strict=True))

    def _wait_written(self, before: dict[str, bytes | None], worker: Any) -> None:
        """Until the worker wrote one of these users: it is in the middle of their ingest
        (committed offsets, which the status reads, lag a second behind)."""
        from projections import keys as k

        client, deadline = self.redis(), time.monotonic() + 120
        names = list(before)
        while True:
            pipe = client.pipeline(transaction=False)
            for name in names:
                pipe.hget(name, k.VERSION)
            if any(v != before[n] for n, v in zip(names, pipe.execute(), strict=True)):
                return
            assert worker.poll() is None, f"worker exited with {worker.returncode}"
            assert time.monotonic() < deadline, "the worker wrote nothing of the part"
            time.sleep(0.01)

    def produce(self, items: list[tuple[str, bytes | None, bytes]]) -> float:
        """Produce raw (topic, key, value) records in order, as fast as Kafka takes them;
        returns the seconds it took."""
        return asyncio.run(_produce(self.settings, items))

    def redis(self) -> Any:
        """A client of the pipeline's Redis."""
        return sync_client(self.settings)

    def dead_letters(self, count: int, timeout: float = 60) -> list[dict[str, Any]]:
        """The first `count` letters of the DLQ topic, decoded."""
        return asyncio.run(_read_dlq(self.settings, count, timeout))

    def stop(self) -> None:
        for proc in self.workers:
            if proc.poll() is None:
                self.kill(proc, signal.SIGTERM)


async def _read_dlq(settings: Settings, count: int, timeout: float) -> list[dict[str, Any]]:
    consumer = AIOKafkaConsumer(
        Topics(settings.topic_prefix).dlq,
        **client_options(settings),
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    out: list[dict[str, Any]] = []
    try:
        deadline = time.monotonic() + timeout
        while len(out) < count and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=1000)
            for messages in batch.values():
                out += [msgpack.unpackb(m.value, raw=False) for m in messages]
    finally:
        await consumer.stop()
    return out


async def _produce(settings: Settings, items: list[tuple[str, bytes | None, bytes]]) -> float:
    await ensure_topics(settings)
    producer = AIOKafkaProducer(
        **client_options(settings),
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
        max_batch_size=1 << 20,
    )
    await producer.start()
    try:
        started = time.monotonic()
        for i in range(0, len(items), 2000):
            sent = [await producer.send(t, v, key=k) for t, k, v in items[i : i + 2000]]
            await asyncio.gather(*sent)
        return time.monotonic() - started
    finally:
        await producer.stop()


def port_free(port: int) -> bool:
    """Whether nothing listens on 127.0.0.1:port (for services a test starts itself)."""
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
