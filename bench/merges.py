"""What a merge costs (docs/design.md §7): anonymous ids with H events each are merged into
known users with H events of their own, through the real steps and link graph step on the
Redis of the PROFILES_* settings (in process: `DirectMailer`, as a replay runs merges), in a
scratch namespace. Prints events moved per second of the merge wave (wall and CPU), and, for
comparison, the same events folded as plain records; writes bench/results/merges.json.

    .venv/bin/python -m bench.merges --pairs 200 --history 50
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from pathlib import Path
from typing import Any

from projections import keys
from projections.company_step import DirectSink
from projections.fold import decode_field
from projections.identity_step import DirectMailer
from projections.step import FoldConfig, Positioned, apply_batch
from projections.store import RedisStore
from schemas.codec import validate
from schemas.limits import Limits
from streams.redis_clients import async_client
from streams.settings import Settings

BATCH = 500


def _track(user: str, i: int, at: int) -> dict[str, Any]:
    return {
        "type": "track",
        "app_id": "bench",
        "user_id": user,
        "event_id": f"{user}-{i}",
        "timestamp": at,
        "name": "Viewed Pricing",
    }


async def _fold(store: RedisStore, ns: str, records: list[dict[str, Any]], now: int) -> None:
    config = FoldConfig()
    mailer = DirectMailer(store, DirectSink(store), ns, config)
    items = [Positioned(validate(r, Limits(), now), "bench", 0, i) for i, r in enumerate(records)]
    for i in range(0, len(items), BATCH):
        await apply_batch(
            store, mailer.sink, ns, items[i : i + BATCH], now_ms=now, config=config, mailer=mailer
        )
        await mailer.drain(now)


async def run(pairs: int, history: int) -> dict[str, Any]:
    client = async_client(Settings())
    store = RedisStore(client)
    ns = f"benchm{uuid.uuid4().hex[:6]}"
    await store.mark(ns)
    now = int(time.time() * 1000)
    start = now - 20 * 86_400_000
    step = 20 * 86_400_000 // max(history, 1)
    data = [
        _track(f"{who}{p}", i, start + i * step)
        for p in range(pairs)
        for who in ("anon-", "user-")
        for i in range(history)
    ]
    try:
        t0, c0 = time.monotonic(), time.process_time()
        await _fold(store, ns, data, now)
        fold_wall, fold_cpu = time.monotonic() - t0, time.process_time() - c0
        aliases = [
            {
                "type": "alias",
                "app_id": "bench",
                "user_id": f"user-{p}",
                "previous_id": f"anon-{p}",
                "event_id": f"alias-{p}",
                "timestamp": now - 1000,
            }
            for p in range(pairs)
        ]
        t0, c0 = time.monotonic(), time.process_time()
        await _fold(store, ns, aliases, now)
        wall, cpu = time.monotonic() - t0, time.process_time() - c0
        raw = await client.hget(keys.user(ns, "bench", "user-0"), keys.HEADER)
        header = decode_field(raw)
        if header.get("merged_ids") != ["anon-0"] or header["total_sessions"] < 1:
            raise SystemExit(f"the merge did not happen: {header}")
    finally:
        async for key in client.scan_iter(match=f"{ns}:*", count=1000):
            await client.unlink(key)
        await client.aclose()
    moved = pairs * history
    return {
        "pairs": pairs,
        "history": history,
        "events_moved": moved,
        "merge_wall_s": round(wall, 3),
        "merge_cpu_s": round(cpu, 3),
        "moved_per_s_wall": round(moved / wall),
        "moved_per_s_cpu": round(moved / cpu),
        "plain_fold_events_per_s_cpu": round(len(data) / fold_cpu),
        "plain_fold_wall_s": round(fold_wall, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=200)
    parser.add_argument("--history", type=int, default=50)
    args = parser.parse_args()
    found = asyncio.run(run(args.pairs, args.history))
    print(json.dumps(found, indent=2))
    out = Path(__file__).parent / "results" / "merges.json"
    out.write_text(json.dumps(found, indent=2) + "\n")


if __name__ == "__main__":
    main()
