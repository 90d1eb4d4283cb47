"""The browser example (examples/browser) in headless Chromium: the page, served from another
origin than `profiles serve`, sends a page view on load and a tracked event on its button
through the ingestion API (CORS preflight and all), and a real worker folds both."""

import http.server
import re
import secrets
import shutil
import threading
import time
import urllib.error
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from pipelinekit import ROOT

pytestmark = [pytest.mark.integration]

APP = "acme-app"
ADMIN = "e2e-admin-" + secrets.token_hex(8)
WRITE_KEY = "e2e-write-" + secrets.token_hex(8)


@contextmanager
def static_site(folder: Path) -> Iterator[str]:
    """Serves `folder` on a port of its own (another origin than the API's); its address."""
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def the_example(folder: Path, endpoint: str) -> Path:
    """A copy of examples/browser with its three settings filled in, as a site owner would."""
    shutil.copytree(ROOT / "examples" / "browser", folder)
    page = folder / "index.html"
    html = page.read_text(encoding="utf-8")
    for name, value in (("endpoint", endpoint), ("app-id", APP), ("write-key", WRITE_KEY)):
        html, count = re.subn(rf'data-{name}="[^"]*"', f'data-{name}="{value}"', html)
        assert count == 1, name
    page.write_text(html, encoding="utf-8")
    return folder


def test_the_snippet_sends_a_page_view_and_a_tracked_event(
    pipeline: Any, serve: Any, chromium: Any, tmp_path: Path
) -> None:
    pipeline.start_worker()
    pipeline.env["PROFILES_WRITE_KEYS"] = f"{APP}={WRITE_KEY}"
    api = serve(pipeline, {"*": ADMIN})
    ingest = api.base + "/api/ingest/batch"

    def answered(response: Any) -> bool:
        return response.url == ingest and response.request.method == "POST"

    with static_site(the_example(tmp_path / "site", api.base)) as origin, chromium() as browser:
        page = browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        sent = []
        with page.expect_response(answered, timeout=15_000) as loaded:
            page.goto(origin + "/index.html")
        sent.append(loaded.value)
        with page.expect_response(answered, timeout=15_000) as clicked:
            page.get_by_role("button", name="Create report").click()
        sent.append(clicked.value)
        for response, kind in zip(sent, ("page", "track"), strict=True):
            assert response.status == 200, (kind, response.text())
            assert response.json()["accepted"] == 1, (kind, response.json())
            assert response.request.all_headers()["origin"] == origin  # cross-origin
            assert response.headers["access-control-allow-origin"] == "*"
        user = page.evaluate("localStorage.getItem('profiles.anonymous_id')")
        assert errors == []
    assert re.fullmatch(r"anon-[0-9a-f-]{36}", user)

    def folded() -> dict[str, Any] | None:
        try:
            profile: dict[str, Any] = api.get(f"/api/apps/{APP}/users/{user}")
        except urllib.error.HTTPError as exc:
            assert exc.code == 404
            return None
        overview = profile["overview"]
        pages, events = overview["top_pages"], overview["top_events"]
        return profile if pages and events else None

    deadline = time.monotonic() + 60
    while (profile := folded()) is None:
        assert time.monotonic() < deadline, "the worker did not fold the page's records"
        time.sleep(0.2)
    host = origin.removeprefix("http://")
    assert profile["overview"]["top_pages"] == [{"page": f"{host}/index.html", "count": 1}]
    assert profile["overview"]["top_events"] == [{"name": "Report Created", "count": 1}]
    assert profile["total_sessions"] == 1
