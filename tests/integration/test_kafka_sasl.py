"""Kafka SASL/SCRAM end to end: the whole pipeline over the broker's SASL_PLAINTEXT listener
only (scripts/services opens it, with a local SCRAM user), and a wrong password refused."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from typing import Any

import pytest
import redis
from compare import compare_users
from pipelinekit import PROFILES

from schemas.generate import generate

pytestmark = pytest.mark.integration


def sasl_address(env: dict[str, str]) -> tuple[str, int]:
    """Where scripts/services opens the SASL listener: PROFILES_KAFKA_SASL_PORT, else the
    bootstrap port + 2, on the bootstrap host."""
    first = env.get("PROFILES_KAFKA_BOOTSTRAP", "127.0.0.1:9092").split(",")[0]
    host, port = first.split("://")[-1].rsplit(":", 1)
    return host, int(env.get("PROFILES_KAFKA_SASL_PORT") or int(port) + 2)


@pytest.fixture
def sasl(pipeline: Any) -> Any:
    """The pipeline, switched to the SASL listener (SCRAM-SHA-512) for every client."""
    host, port = sasl_address(pipeline.env)
    with socket.socket() as probe:
        probe.settimeout(5)
        if probe.connect_ex((host, port)) != 0:
            pytest.fail(
                f"no SASL listener on {host}:{port}: the broker was started before "
                "scripts/services opened one; run `scripts/services down` and `up` again"
            )
    pipeline.env.update(
        {
            "PROFILES_KAFKA_BOOTSTRAP": f"{host}:{port}",
            "PROFILES_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "PROFILES_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "PROFILES_KAFKA_SASL_USERNAME": os.environ.get(
                "PROFILES_KAFKA_SASL_LOCAL_USER", "profiles"
            ),
            "PROFILES_KAFKA_SASL_PASSWORD": os.environ.get(
                "PROFILES_KAFKA_SASL_LOCAL_PASSWORD", "profiles-local-secret"
            ),
        }
    )
    return pipeline


def profiles(env: dict[str, str], *args: str, timeout: float = 120) -> Any:
    return subprocess.run(
        [PROFILES, *args], env=env, text=True, capture_output=True, timeout=timeout, check=False
    )


def assert_refused(result: Any) -> None:
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("profiles: kafka refused the login: "), result.stderr
    assert "SaslAuthenticationFailed" in result.stderr, result.stderr


def test_the_pipeline_runs_over_sasl_scram(sasl: Any) -> None:
    now_ms = int(time.time() * 1000)
    records = generate(users=4, days=7, end_ms=now_ms, seed=17, duplicates=0.05, shuffle=True)
    sasl.start_worker()
    published = sasl.publish_file(records)
    assert published.returncode == 0, published.stderr
    deadline = time.monotonic() + 180
    while True:  # `profiles status` over SASL until the worker is idle
        status = profiles(sasl.env, "status", "--json")
        assert status.returncode == 0, status.stderr
        state = json.loads(status.stdout)
        if state["lag"] == 0 and state["groups"][0]["processed"] == len(records):
            break
        assert all(w.poll() is None for w in sasl.workers), "the worker exited"
        assert time.monotonic() < deadline, f"still lagging: {state['lag']}"
        time.sleep(0.5)
    assert state["dlq"] == 0
    assert compare_users(sasl, records, now_ms) == len({r["user_id"] for r in records})
    # the other mechanism the listener offers works for the same user
    sha256 = profiles({**sasl.env, "PROFILES_KAFKA_SASL_MECHANISM": "SCRAM-SHA-256"}, "status")
    assert sha256.returncode == 0, sha256.stderr
    assert f"processed {len(records)}" in sha256.stdout


def test_a_wrong_password_is_refused_in_one_line_and_processes_nothing(sasl: Any) -> None:
    records = generate(users=2, days=3, end_ms=int(time.time() * 1000), seed=5)
    path = sasl.tmp / "records.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    wrong = {**sasl.env, "PROFILES_KAFKA_SASL_PASSWORD": "not-the-password"}

    assert_refused(profiles(wrong, "publish", str(path)))
    assert_refused(profiles(wrong, "status"))
    assert sasl.status()["groups"][0]["processed"] == 0

    published = profiles(sasl.env, "publish", str(path))
    assert published.returncode == 0, published.stderr
    worker = profiles(wrong, "worker")  # refused before it consumes: it exits by itself
    assert_refused(worker)

    status = sasl.status()
    assert (status["groups"][0]["processed"], status["lag"]) == (0, len(records))
    client = redis.Redis.from_url(sasl.settings.redis_url)
    assert not list(client.scan_iter(match=f"{sasl.settings.namespace}*", count=1000))
