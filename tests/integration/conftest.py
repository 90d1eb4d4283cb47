"""Integration fixtures beyond tests/conftest.py (services, pipeline): the Redis URLs of the
standalone server and of the 3-master cluster."""

from __future__ import annotations

import os
import subprocess

import pytest
from pipelinekit import ROOT

from streams.settings import Settings


@pytest.fixture(scope="session")
def redis_url(services: None) -> str:
    return Settings().redis_url


@pytest.fixture(scope="session")
def cluster_url(services: None) -> str:
    """A 3-master Redis Cluster, started by scripts/services (a no-op when it runs)."""
    subprocess.run([str(ROOT / "scripts" / "services"), "cluster", "up", "3"], check=True, cwd=ROOT)
    return f"redis://127.0.0.1:{os.environ.get('PROFILES_REDIS_CLUSTER_PORT', '7000')}/0"
