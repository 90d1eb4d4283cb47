"""The fault suite's data set, and the check that every view equals the batch computation."""

from __future__ import annotations

import time
from typing import Any

from compare import compare_companies, compare_users

from schemas.generate import generate


def dataset(seed: int, users: int = 150) -> tuple[list[dict[str, Any]], int]:
    end_ms = int(time.time() * 1000)
    records = generate(
        users=users,
        days=21,
        end_ms=end_ms,
        seed=seed,
        commands=True,
        duplicates=0.05,
        shuffle=True,
    )
    return records, end_ms


def assert_exact(pipeline: Any, records: list[dict[str, Any]], now_ms: int) -> None:
    """Lag 0, every record processed once, and every user and company view as computed."""
    status = pipeline.wait_idle()
    assert status["dlq"] == 0
    assert status["groups"][0]["processed"] == len(records)
    assert compare_users(pipeline, records, now_ms) >= 50
    assert compare_companies(pipeline, records, now_ms) >= 10
