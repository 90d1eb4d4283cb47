"""The explorer's HTTP latency: `profiles serve` on the namespace of the PROFILES_* settings (the
demo's, say), each endpoint called over HTTP for users and companies of the data, one at a time;
prints p50, p99 and calls per second of each, and the same read through the reader library.

    PROFILES_NAMESPACE=demo .venv/bin/python -m bench.api --calls 300
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from projections.reader import Reader
from streams.redis_clients import sync_client
from streams.settings import Settings

PROFILES = Path(sys.executable).parent / "profiles"


def timed(call: Callable[[int], Any], calls: int) -> dict[str, float]:
    """p50 and p99 in ms, and calls per second, of `calls` calls in a row."""
    took = []
    for i in range(calls):
        started = time.perf_counter()
        call(i)
        took.append(time.perf_counter() - started)
    took.sort()
    return {
        "p50_ms": round(statistics.median(took) * 1000, 2),
        "p99_ms": round(took[min(len(took) - 1, int(len(took) * 0.99))] * 1000, 2),
        "per_s": round(len(took) / sum(took), 1),
    }


def serve(token: str) -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PROFILES_API_TOKENS": f"*={token}"}
    cmd = [str(PROFILES), "serve", "--port", str(port)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    for _ in range(150):
        try:
            httpx.get(base + "/api/openapi.json", timeout=1)
            return proc, base
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("bench: profiles serve did not answer in 30 s")


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.api", description=__doc__)
    parser.add_argument("--calls", type=int, default=300, help="calls of each endpoint")
    args = parser.parse_args()
    cfg = Settings()
    reader = Reader(sync_client(cfg), cfg.namespace)
    apps = reader.apps()
    if not apps:
        raise SystemExit(f"bench: namespace {cfg.namespace!r} has no users (run `make demo`)")
    app = apps[0]
    users = [u["user_id"] for u in reader.users(app, limit=200)[0]]
    companies = [c["company_id"] for c in reader.companies(app, limit=200)[0]]
    names = [u["name"][:2] for u in reader.users(app, limit=200)[0] if u["name"]]
    token = secrets.token_urlsafe(24)
    proc, base = serve(token)
    client = httpx.Client(base_url=f"{base}/api/apps/{quote(app)}", timeout=10)
    client.headers["Authorization"] = f"Bearer {token}"

    def user(i: int) -> str:
        return quote(users[i % len(users)], safe="")

    def company(i: int) -> str:
        return quote(companies[i % len(companies)], safe="")

    paths: dict[str, Callable[[int], str]] = {
        "users list (50)": lambda i: "/users",
        "users search": lambda i: f"/users?q={quote(names[i % len(names)])}",
        "user (all time)": lambda i: f"/users/{user(i)}",
        "user (30 days + search)": lambda i: f"/users/{user(i)}?from=2026-10-30&search=re",
        "user daily": lambda i: f"/users/{user(i)}/daily",
        "sessions": lambda i: f"/users/{user(i)}/sessions",
        "sentiment": lambda i: f"/users/{user(i)}/sentiment",
        "engagement": lambda i: f"/users/{user(i)}/engagement",
        "companies list (50)": lambda i: "/companies",
        "company": lambda i: f"/companies/{company(i)}",
        "company users": lambda i: f"/companies/{company(i)}/users",
        "segments": lambda i: "/segments",
    }
    results: dict[str, Any] = {}
    try:
        for name, path in paths.items():

            def call(i: int, path: Callable[[int], str] = path) -> None:
                client.get(path(i)).raise_for_status()

            results[name] = timed(call, args.calls)
        results["reader: user (all time)"] = timed(
            lambda i: reader.user(app, users[i % len(users)]), args.calls
        )
    finally:
        proc.terminate()
        proc.wait(timeout=15)
    width = max(map(len, results))
    for name, r in results.items():
        p50, p99, rate = r["p50_ms"], r["p99_ms"], r["per_s"]
        print(f"{name:<{width}}  p50 {p50:7.2f} ms  p99 {p99:7.2f} ms  {rate:8.1f}/s")
    ratio = results["user (all time)"]["p50_ms"] / results["reader: user (all time)"]["p50_ms"]
    print(f"HTTP / reader p50 of the user view: {ratio:.1f}×")
    print(json.dumps({"namespace": cfg.namespace, "app": app, "calls": args.calls, **results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
