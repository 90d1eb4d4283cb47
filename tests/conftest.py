"""Make tests/ importable so every test can use the batch reference (tests/reference.py), and
the fixtures of the tests on real services (integration and e2e): scripts/services starts Kafka
and Redis once a session; each test gets its own topic prefix, namespace and consumer group."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from pipelinekit import ROOT, Pipeline


@pytest.fixture(scope="session")
def services() -> None:
    subprocess.run([str(ROOT / "scripts" / "services"), "up"], check=True, cwd=ROOT)


@pytest.fixture
def pipeline(services: None, tmp_path: Path) -> Iterator[Pipeline]:
    p = Pipeline(tmp_path)
    yield p
    p.stop()
