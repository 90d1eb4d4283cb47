"""End-to-end tests of the explorer page: real Kafka and Redis (scripts/services), a real
worker and `profiles serve`, and headless Chromium driven by Playwright (the Debian browser at
/usr/bin/chromium; Playwright never downloads one here)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import pytest
from pipelinekit import PROFILES, ROOT, Pipeline

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """Where the screenshots go: PROFILES_TEST_ARTIFACTS, else test-artifacts/e2e. An earlier
    run's screenshots (`NN-step.png`) go first, so the folder holds this run's only."""
    path = Path(os.environ.get("PROFILES_TEST_ARTIFACTS") or ROOT / "test-artifacts" / "e2e")
    path.mkdir(parents=True, exist_ok=True)
    for old in path.glob("[0-9][0-9]-*.png"):
        old.unlink()
    return path


@pytest.fixture
def chromium() -> Callable[[], AbstractContextManager[Any]]:
    """Opens headless Chromium in a `with` block. Not a plain fixture: while Playwright's sync
    API runs, asyncio.run() (the pipeline's status and CLI calls) would find its loop running."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: scripts/bootstrap installs Debian's chromium")

    @contextmanager
    def launch() -> Iterator[Any]:
        from playwright.sync_api import sync_playwright

        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                yield browser
            finally:
                browser.close()

    return launch


class Explorer:
    """A `profiles serve` process of a pipeline, and plain HTTP calls to its API."""

    def __init__(self, pipeline: Pipeline, tokens: dict[str, str]) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.base = f"http://127.0.0.1:{port}"
        self.token = tokens["*"]
        spec = ",".join(f"{app}={token}" for app, token in tokens.items())
        self.log = pipeline.tmp / "serve.log"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [PROFILES, "serve", "--host", "127.0.0.1", "--port", str(port)],
                env={**pipeline.env, "PROFILES_API_TOKENS": spec},
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=pipeline.tmp,
            )
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"profiles serve exited: {self.log.read_text()}")
            try:
                self.get("/api/apps")
                return
            except (urllib.error.URLError, ConnectionError):
                assert time.monotonic() < deadline, f"no answer: {self.log.read_text()}"
                time.sleep(0.2)

    def get(self, path: str, **params: Any) -> Any:
        query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
        request = urllib.request.Request(
            self.base + path + (f"?{query}" if query else ""),
            headers={"Authorization": f"Bearer {self.token}"},
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            return json.load(answer)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=15)


@pytest.fixture
def serve() -> Iterator[Callable[[Pipeline, dict[str, str]], Explorer]]:
    """Starts `profiles serve` for a pipeline with tokens {app or "*": token}; stops it after
    the test (before the pipeline's workers)."""
    started: list[Explorer] = []

    def start(pipeline: Pipeline, tokens: dict[str, str]) -> Explorer:
        started.append(Explorer(pipeline, tokens))
        return started[-1]

    yield start
    for explorer in started:
        explorer.stop()
