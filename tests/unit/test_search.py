"""The explorer's lists through the real step and reader in memory: users found by id, name or
email prefix and the companies list equal a brute-force search of the batch reference, whatever
the order, duplicates, renames and deletes, and however the pages are cut."""

from __future__ import annotations

import random
from typing import Any

import pytest
import reference as ref
from foldkit import fold, random_batches
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from projections.reader import NotFound, Reader

NOW = 1_795_000_000_000
USERS = ["ann", "Anna", "anders", "bo", "Bö-1", "ü:x{y}", "an"]
NAMES = ["Ann Lee", "anna", "ÄNNE", "Bob", "bo", "Straße", "STRASSE", "", None]
EMAILS = ["ann@x.io", "ANNA@y.io", "bob@x.io", "a@b.c", None]
COMPANIES = ["acme", "Beta Co", "ümlaut", None]
PROBES = ["a", "A", "an", "ann", "Ann", "anna", "ä", "ÄN", "b", "bo", "B", "s", "stra", "x", "ü"]


@st.composite
def record_sets(draw: st.DrawFn) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    for i in range(draw(st.integers(1, 25))):
        user = draw(st.sampled_from(USERS))
        at = NOW - draw(st.integers(1, 5 * 86_400)) * 1000
        common = {"app_id": "app", "user_id": user}
        if draw(st.integers(0, 9)) == 0:
            records.append(
                {
                    "type": "command",
                    **common,
                    "command_id": f"c{i}",
                    "issued_at": at,
                    "command": draw(st.sampled_from(["exclude", "include", "delete"])),
                }
            )
            continue
        traits = {
            k: v
            for k, v in (
                ("name", draw(st.sampled_from(NAMES))),
                ("email", draw(st.sampled_from(EMAILS))),
            )
            if v is not None
        }
        company = draw(st.sampled_from(COMPANIES))
        record = {
            "type": "identify",
            **common,
            "event_id": f"e{i}",
            "timestamp": at,
            "traits": traits,
        }
        if company is not None:
            record["company"] = {"id": company, "name": company.title()}
        if draw(st.booleans()):
            record = {"type": "track", **common, "event_id": f"e{i}", "timestamp": at, "name": "Go"}
        records.append(record)
    return records


def every_page(list_page: Any, limit: int) -> list[Any]:
    out, cursor = [], None
    while True:
        rows, cursor = list_page(limit, cursor)
        out += rows
        if cursor is None:
            return out


def expected_search(rows: list[dict[str, Any]], q: str) -> list[str]:
    """Id matches by id, then name matches by folded name, then email matches by folded email;
    each user once, under the first that matches."""

    def folded(value: str | None) -> str:
        return (value or "").casefold()

    def first(row: dict[str, Any]) -> str | None:
        if row["user_id"].startswith(q):
            return "id"
        return next((f for f in ("name", "email") if folded(row[f]).startswith(q.casefold())), None)

    out = []
    for stage in ("id", "name", "email"):
        hits = [r for r in rows if first(r) == stage]
        key = (
            (lambda r: r["user_id"].encode())
            if stage == "id"
            else (lambda r, s=stage: (folded(r[s]).encode(), r["user_id"].encode()))
        )
        out += [r["user_id"] for r in sorted(hits, key=key)]
    return out


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(record_sets(), st.integers(0, 2**32), st.integers(1, 4))
def test_search_and_companies_equal_a_brute_force_over_the_reference(
    records: list[dict[str, Any]], seed: int, limit: int
) -> None:
    rng = random.Random(seed)
    reader: Reader = fold(records, now_ms=NOW, batches=random_batches(len(records), rng), rng=rng)
    rows = ref.users_list(records, "app", now_ms=NOW)
    expected = sorted(c for _a, c in ref.company_ids(records, now_ms=NOW))
    if not rows and not expected:  # every user deleted: the app has no data
        for page in (reader.users, reader.companies, lambda app: reader.find_users(app, "a")):
            with pytest.raises(NotFound, match="'app' has no users or companies"):
                page("app")
        return
    for q in PROBES:
        found = every_page(lambda n, c, q=q: reader.find_users("app", q, limit=n, cursor=c), limit)
        assert [r["user_id"] for r in found] == expected_search(rows, q), q
        assert found == [next(r for r in rows if r["user_id"] == f["user_id"]) for f in found]
    companies = every_page(lambda n, c: reader.companies("app", limit=n, cursor=c), limit)
    assert [c["company_id"] for c in companies] == expected
    assert reader.count_companies("app") == len(expected)


def test_a_search_refuses_an_empty_text_and_a_foreign_cursor() -> None:
    records = [
        {
            "type": "identify",
            "app_id": "app",
            "user_id": "u",
            "event_id": "e",
            "timestamp": NOW,
            "traits": {"name": "Ann"},
        },
    ]
    reader = fold(records, now_ms=NOW)
    with pytest.raises(ValueError, match="empty"):
        reader.find_users("app", "")
    for cursor in ("nonsense", "last_seen:0:00", "name:"):
        with pytest.raises(ValueError, match="cursor"):
            reader.find_users("app", "a", cursor=cursor)
    assert reader.find_users("app", "aN") == (
        [{**reader.users("app")[0][0]}],
        None,
    )
    assert reader.find_users("app", "nobody") == ([], None)  # the app has data: nothing matched
    for page in (reader.users, reader.companies, lambda app: reader.find_users(app, "a")):
        with pytest.raises(NotFound, match="app 'other' has no users or companies"):
            page("other")
