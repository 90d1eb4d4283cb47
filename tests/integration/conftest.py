"""Real services for integration tests: scripts/services starts Kafka and Redis once a session;
each test gets its own topic prefix, namespace and consumer group, and real worker processes."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from pipelinekit import ROOT, Pipeline

from streams.settings import Settings


@pytest.fixture(scope="session")
def services() -> None:
    subprocess.run([str(ROOT / "scripts" / "services"), "up"], check=True, cwd=ROOT)


@pytest.fixture(scope="session")
def redis_url(services: None) -> str:
    return Settings().redis_url


@pytest.fixture(scope="session")
def cluster_url(services: None) -> str:
    """A 3-master Redis Cluster, started by scripts/services (a no-op when it runs)."""
    subprocess.run([str(ROOT / "scripts" / "services"), "cluster", "up", "3"], check=True, cwd=ROOT)
    return f"redis://127.0.0.1:{os.environ.get('PROFILES_REDIS_CLUSTER_PORT', '7000')}/0"


@pytest.fixture
def pipeline(services: None, tmp_path: Path) -> Iterator[Pipeline]:
    p = Pipeline(tmp_path)
    yield p
    p.stop()
