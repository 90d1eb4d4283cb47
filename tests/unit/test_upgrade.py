"""Reading a namespace of an older format while `profiles replay` rebuilds it (issue 18)."""

from __future__ import annotations

from projections import keys
from projections.fold import encode_field
from projections.reader import Reader
from projections.store import MemoryHashes, MemoryStore


def test_the_users_tab_of_a_format_2_company_still_reads() -> None:
    """Before format 3 the users tab was a list in the company hash (`u`); a replay's old
    namespace keeps being read until the flip."""
    store = MemoryStore("ps")
    header = {"name": "C", "signed_up_at": None, "properties": {}, "first_seen_at": 1,
              "last_seen_at": 2, "total_sessions": 1, "users_count": 1, "days": []}  # fmt: skip
    store.data[keys.company("ps", "a", "c")] = {
        keys.HEADER: encode_field(header),
        "u": encode_field([["u1", "Ann", None, 2, 1, False]]),
    }
    rows = Reader(MemoryHashes(store), "ps").company_users("a", "c")
    assert [(r["user_id"], r["name"], r["total_sessions"]) for r in rows] == [("u1", "Ann", 1)]
