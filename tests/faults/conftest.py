"""A Kafka broker and a redis-server (AOF on) of the fault suite's own, started by
scripts/services in a private directory, so its tests can kill and restart them without
disturbing any other test; each test gets an isolated pipeline on them."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pipelinekit import ROOT, Pipeline, port_free

SERVICES = str(ROOT / "scripts" / "services")


def _free_ports() -> tuple[int, int]:
    """A Kafka port with the next two free (controller, SASL listener) and a Redis port."""
    for base in range(29092, 39092, 10):
        if all(port_free(base + i) for i in range(4)):
            return base, base + 3
    raise RuntimeError("no free ports for the fault suite's services")


class Stack:
    """The private services, and the faults a test can inflict on them."""

    def __init__(self, root: Path) -> None:
        kafka, redis = _free_ports()
        self.root = root
        self.redis_url = f"redis://127.0.0.1:{redis}/0"
        self.env = {
            "PROFILES_SERVICES_DIR": str(root),
            "PROFILES_KAFKA_BOOTSTRAP": f"127.0.0.1:{kafka}",
            "PROFILES_REDIS_URL": self.redis_url,
            "PROFILES_REDIS_APPENDONLY": "yes",
            # every write reaches the disk before Redis answers: not even a host crash loses one
            "PROFILES_REDIS_APPENDFSYNC": "always",
            "PROFILES_KAFKA_HEAP_OPTS": "-Xms256m -Xmx768m",
            # the least Kafka allows: a killed worker's partitions move on sooner
            "PROFILES_CONSUMER_SESSION_TIMEOUT_SECONDS": "6",
        }

    def services(self, *args: str) -> None:
        subprocess.run([SERVICES, *args], env={**os.environ, **self.env}, check=True, cwd=ROOT)

    def pid(self, name: str) -> int:
        return int((self.root / name / f"{name}.pid").read_text().strip())

    def stop(self, name: str, sig: int) -> None:
        """Send `sig` to the service's process (`kafka` or `redis`) and wait until it is gone."""
        pid = self.pid(name)
        os.kill(pid, sig)
        deadline = time.monotonic() + 120
        while Path(f"/proc/{pid}").exists():
            assert time.monotonic() < deadline, f"{name} (pid {pid}) did not stop"
            time.sleep(0.1)

    def restart(self, name: str, sig: int = signal.SIGKILL, down_for: float = 2.0) -> None:
        self.stop(name, sig)
        time.sleep(down_for)
        self.services("up")  # starts what is not running; the other one is left alone


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = Stack(tmp_path_factory.mktemp("fault-services"))
    try:
        s.services("up")
        yield s
    finally:
        s.services("down", "--purge")


@pytest.fixture
def pipeline(stack: Stack, tmp_path: Path) -> Iterator[Pipeline]:
    p = Pipeline(tmp_path, services=stack.env)
    yield p
    p.stop()
