"""The explorer's companies list through the real steps and reader in memory: each order (last
seen, most users, name, id) and the search by id or name prefix equal a brute force over the
batch reference, whatever the order, duplicates, renames, moves, exclusions and deletes, and
however the pages are cut."""

from __future__ import annotations

import random
from typing import Any

import pytest
import reference as ref
from foldkit import fold, random_batches
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from projections import keys
from projections.reader import Reader

NOW = 1_795_000_000_000
USERS = ["u1", "u2", "u3", "u4", "u5"]
COMPANIES = ["acme", "Acme:{eu}/12", "beta", "Bö", "zeta"]
NAMES = ["Acme", "acme GmbH", "ÄRGER", "Beta Co", "bo", "Straße", "STRASSE", None]
PROBES = ["a", "A", "ac", "Acme", "acme:", "ä", "b", "Bö", "bö", "s", "stras", "z", "x"]


@st.composite
def record_sets(draw: st.DrawFn) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    for i in range(draw(st.integers(1, 25))):
        user = draw(st.sampled_from(USERS))
        at = NOW - draw(st.integers(1, 5 * 86_400)) * 1000
        common = {"app_id": "app", "user_id": user}
        kind = draw(st.integers(0, 9))
        if kind == 0:
            command = draw(st.sampled_from(["exclude", "include", "delete"]))
            records.append(
                {
                    **common,
                    "type": "command",
                    "command_id": f"c{i}",
                    "issued_at": at,
                    "command": command,
                }
            )
        elif kind < 4:
            records.append(
                {**common, "type": "track", "event_id": f"e{i}", "timestamp": at, "name": "Go"}
            )
        else:
            company: dict[str, Any] = {"id": draw(st.sampled_from(COMPANIES))}
            name = draw(st.sampled_from(NAMES))
            if name is not None:
                company["name"] = name
            records.append(
                {
                    **common,
                    "type": "identify",
                    "event_id": f"e{i}",
                    "timestamp": at,
                    "traits": {},
                    "company": company,
                }
            )
    return records


def every_page(list_page: Any, limit: int) -> list[str]:
    out, cursor = [], None
    while True:
        rows, cursor = list_page(limit, cursor)
        out += [r["company_id"] for r in rows]
        if cursor is None:
            return out


def ids(rows: list[dict[str, Any]]) -> list[str]:
    return [r["company_id"] for r in rows]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(record_sets(), st.integers(0, 2**32), st.integers(1, 3))
def test_every_order_and_the_search_equal_a_brute_force_over_the_reference(
    records: list[dict[str, Any]], seed: int, limit: int
) -> None:
    rng = random.Random(seed)
    reader: Reader = fold(records, now_ms=NOW, batches=random_batches(len(records), rng), rng=rng)
    if not ref.companies_list(records, "app", now_ms=NOW):
        return  # the app has no company: test_search covers the answer
    for sort in keys.COMPANY_SORTS:
        listed = every_page(
            lambda n, c, sort=sort: reader.companies("app", sort=sort, limit=n, cursor=c), limit
        )
        assert listed == ids(ref.companies_list(records, "app", now_ms=NOW, sort=sort)), sort
    for q in PROBES:
        found = every_page(
            lambda n, c, q=q: reader.find_companies("app", q, limit=n, cursor=c), limit
        )
        assert found == ids(ref.find_companies(records, "app", q, now_ms=NOW)), q


def test_a_sort_or_a_cursor_of_another_kind_is_refused() -> None:
    identify = {
        "type": "identify",
        "app_id": "app",
        "user_id": "u",
        "event_id": "e",
        "timestamp": NOW,
        "traits": {},
        "company": {"id": "c", "name": "C"},
    }
    reader = fold([identify], now_ms=NOW)
    assert [r["company_id"] for r in reader.companies("app", sort="name")[0]] == ["c"]
    with pytest.raises(ValueError, match="sort is one of"):
        reader.companies("app", sort="signed_up")
    with pytest.raises(ValueError, match="empty"):
        reader.find_companies("app", "")
    for cursor in ("nonsense", "email:00", "name:"):
        with pytest.raises(ValueError, match="cursor"):
            reader.find_companies("app", "c", cursor=cursor)
