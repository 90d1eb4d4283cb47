"""The ingestion API while Kafka is down (an operator's first restart of the broker): a request
it cannot hand to Kafka is a one-line 503 and the SDK sends it again; once Kafka is back the
same records are accepted, and the views count every record once, repeats and all."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import time
from typing import Any

import httpx2 as httpx
import pytest
from compare import compare_companies, compare_users
from faultdata import dataset
from pipelinekit import PROFILES

# one xdist process runs every fault test: they share the private stack and restart it
pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("faults")]

APP = "acme-app"  # the generated data's app
WRITE = "write-acme-" + secrets.token_hex(8)
READ = "read-token-" + secrets.token_hex(8)


def test_kafka_down_is_a_503_and_the_records_sent_again_count_once(
    pipeline: Any, stack: Any
) -> None:
    records, now_ms = dataset(seed=47, users=60)
    events = [r for r in records if r["type"] != "command"]  # an SDK sends no command
    first, second = events[: len(events) // 2], events[len(events) // 2 :]
    pipeline.start_worker()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = pipeline.tmp / "serve.log"
    server = subprocess.Popen(
        [PROFILES, "serve", "--host", "127.0.0.1", "--port", str(port)],
        env={
            **pipeline.env,
            "PROFILES_API_TOKENS": f"*={READ}",
            "PROFILES_WRITE_KEYS": f"{APP}={WRITE}",
            "PROFILES_INGEST_KAFKA_TIMEOUT_SECONDS": "5",
        },
        stdout=open(log, "wb"),  # noqa: SIM115
        stderr=subprocess.STDOUT,
        cwd=pipeline.tmp,
    )
    http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
    auth = {"Authorization": f"Bearer {WRITE}"}

    def send(batch: list[dict[str, Any]]) -> httpx.Response:
        return http.post("/api/ingest/batch", json={"records": batch}, headers=auth)

    def send_all(batch: list[dict[str, Any]]) -> None:
        for i in range(0, len(batch), 200):  # bodies under the limit
            answer = send(batch[i : i + 200])
            assert answer.status_code == 200, answer.text
            assert answer.json()["accepted"] == len(batch[i : i + 200]), answer.text

    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, log.read_text()
            try:
                http.get("/api/apps", headers={"Authorization": f"Bearer {READ}"})
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.2)
        send_all(first)
        pipeline.wait_idle()  # the worker runs (a broker lost while it starts stops it: exit 1)

        stack.stop("kafka", 9)  # SIGKILL: no goodbye to the clients
        started = time.monotonic()
        down = send(second[:200])
        assert down.status_code == 503, down.text
        assert down.json()["error"].count("\n") == 0 and "Kafka" in down.json()["error"]
        assert time.monotonic() - started < 15  # the deadline (5 s), not the producer's patience
        stack.services("up")

        deadline = time.monotonic() + 180
        while (again := send(second[:200])).status_code == 503:  # as an SDK retries
            assert time.monotonic() < deadline, again.text
            time.sleep(1)
        assert again.status_code == 200 and again.json()["accepted"] == 200, again.text
        send_all(second[200:])
        assert server.poll() is None, log.read_text()
    finally:
        http.close()
        server.terminate()
        server.wait(timeout=30)

    # Every record once: what the 503 request may have handed to Kafka before the broker
    # died comes again in the retry, and the fold drops repeats by event_id.
    status = pipeline.wait_idle()
    assert status["dlq"] == 0
    assert status["groups"][0]["processed"] >= len(events)
    assert compare_users(pipeline, events, now_ms) >= 30
    assert compare_companies(pipeline, events, now_ms) >= 5
    assert os.path.exists(log)
