"""The benchmarks' data sets: exactly n generated records, the same for every part."""

from __future__ import annotations

import math
from typing import Any

from schemas.generate import generate

SEED = 7
DAYS = 30


def make_records(n: int, end_ms: int) -> list[dict[str, Any]]:
    """Exactly n records: enough users for n, then the first n in event time."""
    per_user = len(generate(users=200, days=DAYS, end_ms=end_ms, seed=SEED)) / 200
    users = max(1, math.ceil(n / per_user * 1.03))
    while True:
        records = generate(users=users, days=DAYS, end_ms=end_ms, seed=SEED)
        if len(records) >= n:
            return records[:n]
        users = math.ceil(users * n / max(1, len(records)) * 1.03)
