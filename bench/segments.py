"""What segments cost the fold: generated records folded through the real step into Redis (of
the PROFILES_* settings), in batches of 500, into a scratch namespace with no segments and into
one with six; the runs alternate, and the medians and their ratio are printed.

    .venv/bin/python -m bench.segments --users 300 --runs 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
import uuid
from collections import Counter
from typing import Any

from projections.company_step import DirectSink
from projections.membership import apply_definition
from projections.step import FoldConfig, Positioned, apply_batch
from projections.store import RedisStore
from schemas.codec import validate
from schemas.generate import generate
from schemas.limits import Limits
from schemas.segments import parse_segment
from streams.redis_clients import async_client
from streams.settings import Settings

BATCH = 500
RULES: dict[str, tuple[str, dict[str, Any]]] = {
    "promoters": ("user", {"kind": "number", "field": "nps_latest", "operator": "gte", "value": 8}),
    "active": ("user", {"kind": "time", "field": "last_seen_at", "within_days": 7}),
    "regulars": (
        "user",
        {"kind": "number", "field": "total_sessions", "operator": "gt", "value": 3},
    ),
    "included": ("user", {"kind": "excluded", "value": False}),
    "from-gb": (
        "user",
        {
            "kind": "property",
            "source": "auto_properties",
            "key": "country",
            "operator": "eq",
            "value": "GB",
        },
    ),
    "with-plan": (
        "company",
        {"kind": "property", "source": "properties", "key": "plan", "operator": "exists"},
    ),
}


async def fold_once(records: list[dict[str, Any]], app: str, segments: bool, now: int) -> float:
    """Events per second of one fold into a fresh namespace (deleted after)."""
    namespace = f"bench-seg-{uuid.uuid4().hex[:8]}"
    client = async_client(Settings())
    store = RedisStore(client)
    try:
        if segments:
            for offset, (sid, (scope, condition)) in enumerate(sorted(RULES.items())):
                definition = {"id": sid, "app_id": app, "name": sid, "scope": scope,
                              "rule": {"op": "and", "conditions": [condition]}}  # fmt: skip
                segment = parse_segment(definition)
                await apply_definition(store, namespace, sid, segment, offset, now_ms=now)
        offsets: Counter[str] = Counter()
        batch = []
        for r in records:
            topic = f"src.{r['type']}"
            batch.append(Positioned(validate(r, Limits(), now), topic, 0, offsets[topic]))
            offsets[topic] += 1
        sink = DirectSink(store, lambda: now)
        started = time.perf_counter()
        for i in range(0, len(batch), BATCH):
            part = batch[i : i + BATCH]
            await apply_batch(store, sink, namespace, part, now_ms=now, config=FoldConfig())
        return len(batch) / (time.perf_counter() - started)
    finally:
        async for key in client.scan_iter(match=f"{namespace}:*", count=1000):
            await client.unlink(key)
        await client.aclose()


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.segments", description=__doc__)
    parser.add_argument("--users", type=int, default=300, help="users of the generated data")
    parser.add_argument("--runs", type=int, default=5, help="folds of each kind")
    args = parser.parse_args()
    now = int(time.time() * 1000)
    records = generate(users=args.users, days=21, end_ms=now, seed=5)
    app = Counter(r["app_id"] for r in records).most_common(1)[0][0]
    rates: dict[str, list[float]] = {"without": [], "with": []}
    for _ in range(args.runs):
        for kind in rates:
            rates[kind].append(asyncio.run(fold_once(records, app, kind == "with", now)))
    medians = {kind: statistics.median(r) for kind, r in rates.items()}
    for kind, r in rates.items():
        runs = " ".join(f"{x:,.0f}" for x in r)
        print(f"{kind:>7} segments: median {medians[kind]:,.0f} events/s  (runs: {runs})")
    print(f"with / without: {medians['with'] / medians['without']:.2f}×  ({len(records)} events)")
    print(json.dumps({"events": len(records), "segments": len(RULES), **medians}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
