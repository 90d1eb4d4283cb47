"""The company's per-day sums move by differences; they must equal a rebuild from scratch."""

from __future__ import annotations

import asyncio
import random
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from projections import keys
from projections.company import Contribution
from projections.fold import decode_field
from projections.step import apply_company_batch
from projections.store import MemoryStore

NOW = 1_795_000_000_000
DAYS = ["2026-11-01", "2026-11-02", "2026-11-03"]
KEY = keys.company("ps", "a", "c")

figures = st.fixed_dictionaries(
    {
        "e": st.integers(0, 3),
        "s": st.integers(0, 2),
        "ms": st.integers(0, 5),
        "n": st.dictionaries(st.sampled_from(["x", "y"]), st.integers(1, 3), max_size=2),
        "p": st.dictionaries(st.sampled_from(["p/1", "p/2"]), st.integers(1, 3), max_size=2),
    }
).filter(lambda f: bool(f["e"] or f["s"] or f["p"]))  # what a user's day always carries


def member(excluded: bool) -> dict[str, Any]:
    return {
        "name": None,
        "email": None,
        "first_seen_at": 1,
        "last_seen_at": 2,
        "total_sessions": 1,
        "excluded": excluded,
    }


@st.composite
def contributions(draw: st.DrawFn) -> list[Contribution]:
    out = []
    for user in draw(st.lists(st.sampled_from("uvw"), min_size=1, max_size=10)):
        version = draw(st.integers(1, 4))
        current = draw(st.booleans())
        excluded = draw(st.booleans())
        days = draw(st.dictionaries(st.sampled_from(DAYS), figures, max_size=3))
        facts = {"name": [1, "e1", "C"], "created_at": None, "traits": {}}
        out.append(
            Contribution(
                "a",
                "c",
                user,
                version,
                facts,
                member(excluded) if current else None,
                days if current and not excluded else {},
                "ps",
            )
        )
    return out


def stored(store: MemoryStore) -> dict[str, Any]:
    return {
        k: decode_field(v)
        for k, v in store.data.get(KEY, {}).items()
        if k.startswith((keys.DAY_PREFIX, keys.MEMBER_DAYS_PREFIX, keys.HEADER))
    }


@settings(max_examples=200, deadline=None)
@given(contributions(), st.randoms(use_true_random=False))
def test_sums_after_any_batches_equal_a_rebuild(
    items: list[Contribution], rng: random.Random
) -> None:
    live = MemoryStore("ps")
    shuffled = items + rng.sample(items, k=len(items) // 2)  # stale and repeated messages
    rng.shuffle(shuffled)
    cut = sorted(rng.sample(range(len(shuffled) + 1), k=2))
    for batch in (shuffled[: cut[0]], shuffled[cut[0] : cut[1]], shuffled[cut[1] :]):
        if batch:
            asyncio.run(apply_company_batch(live, batch, now_ms=NOW))

    winners: dict[str, Contribution] = {}  # the last of the highest version, as the log has it
    for c in shuffled:
        if c.user_id not in winners or c.version >= winners[c.user_id].version:
            winners[c.user_id] = c
    rebuilt = MemoryStore("ps")
    asyncio.run(apply_company_batch(rebuilt, list(winners.values()), now_ms=NOW))
    assert stored(live) == stored(rebuilt)
    sums = {k for k in stored(live) if k.startswith(keys.DAY_PREFIX)}
    assert sums == {keys.DAY_PREFIX + d for w in winners.values() for d in w.days}
