"""Real services for integration tests: scripts/services starts Kafka and Redis once a session;
each test gets its own topic prefix, namespace and consumer group, and real worker processes."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from pipelinekit import ROOT, Pipeline


@pytest.fixture(scope="session")
def services() -> None:
    subprocess.run([str(ROOT / "scripts" / "services"), "up"], check=True, cwd=ROOT)


@pytest.fixture
def pipeline(services: None, tmp_path: Path) -> Iterator[Pipeline]:
    p = Pipeline(tmp_path)
    yield p
    p.stop()
