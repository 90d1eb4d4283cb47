"""The demo data generator: valid, deterministic, every record kind, duplicates and edge cases."""

from __future__ import annotations

import io
import json
import re
import sys
import uuid
from collections import Counter, defaultdict
from itertools import pairwise
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from schemas.codec import Rejected, validate  # noqa: E402
from schemas.generate import generate, iter_records, write_jsonl  # noqa: E402
from schemas.limits import Limits  # noqa: E402
from schemas.timefmt import parse_timestamp  # noqa: E402

END = 1_790_000_000_000  # 2026-09-21T14:13:20.000Z
DAY = 86_400_000
DAYS = 30
START, STOP = END - DAYS * DAY, END - 60_000
INTERACTIONS = {"track", "page", "feedback", "content"}
ARGS = {"users": 300, "commands": True, "duplicates": 0.05, "shuffle": True, "end_ms": END}


@pytest.fixture(scope="module")
def records() -> list[dict]:
    return generate(**ARGS)


def key(record: dict) -> str:
    return record["command_id"] if record["type"] == "command" else record["event_id"]


def at(record: dict) -> int:
    return parse_timestamp(record["issued_at" if record["type"] == "command" else "timestamp"])


def test_every_record_validates(records):
    limits = Limits()
    failures = []
    for record in records:
        try:
            validate(record, limits, END)
        except Rejected as exc:
            failures.append((exc.reason, exc.detail, record))
    assert not failures, failures[:3]


def test_same_seed_same_records_other_seed_other_records(records):
    assert generate(**ARGS) == records
    assert generate(**{**ARGS, "seed": 2}) != records


def test_unshuffled_is_sorted_and_iter_records_matches():
    listed = generate(users=40, commands=True, end_ms=END)
    times = [at(r) for r in listed]
    assert times == sorted(times)
    assert list(iter_records(users=40, commands=True, end_ms=END)) == listed
    assert list(iter_records(**ARGS)) == generate(**ARGS)


def test_shuffle_only_reorders():
    plain = generate(users=50, end_ms=END)
    shuffled = generate(users=50, end_ms=END, shuffle=True)
    assert shuffled != plain
    assert sorted(map(key, shuffled)) == sorted(map(key, plain))


def test_duplicates_are_exact_copies_in_the_right_fraction(records):
    by_key: dict[str, list[dict]] = defaultdict(list)
    for record in records:
        by_key[key(record)].append(record)
    unique = len(by_key)
    copies = len(records) - unique
    assert copies == round(unique * 0.05)
    assert max(len(group) for group in by_key.values()) == 2
    for group in by_key.values():
        assert all(other == group[0] and other is not group[0] for other in group[1:])
    assert generate(users=50, end_ms=END, duplicates=0.0) != generate(
        users=50, end_ms=END, duplicates=0.2
    )


def test_ids_are_unique_uuids():
    plain = generate(users=100, commands=True, end_ms=END)
    keys = [key(r) for r in plain]
    assert len(set(keys)) == len(keys)
    for record in plain[:200]:
        assert uuid.UUID(key(record).removeprefix("cmd-")).version == 4


def test_every_type_and_command_kind_is_present(records):
    assert set(Counter(r["type"] for r in records)) == INTERACTIONS | {"identify", "command"}
    commands = Counter(r["command"] for r in records if r["type"] == "command")
    assert set(commands) == {"exclude", "include", "reset_content", "delete"}
    actions = {r["action"] for r in records if r["type"] == "content"}
    assert actions == {"seen", "started", "step_completed", "completed", "dismissed", "clicked"}
    assert {r["content_type"] for r in records if r["type"] == "content"} == {
        "flow",
        "spotlight",
        "banner",
        "checklist",
    }
    assert {r["survey_type"] for r in records if r["type"] == "feedback"} == {"nps", "survey"}
    assert {r.get("kind", "tracked") for r in records if r["type"] == "track"} == {
        "tracked",
        "labeled",
        "feature_tag",
    }


def test_timestamps_lie_in_the_period_in_both_wire_styles(records):
    assert all(START <= at(r) <= STOP for r in records)
    raw = [r["issued_at" if r["type"] == "command" else "timestamp"] for r in records]
    ints = sum(isinstance(v, int) for v in raw)
    assert 0.35 < ints / len(raw) < 0.65
    strings = [v for v in raw if isinstance(v, str)]
    assert any(v.endswith("Z") for v in strings)
    assert any(re.search(r"[+-]\d\d:\d\d$", v) for v in strings)


def test_awkward_user_ids_exist(records):
    ids = {r["user_id"] for r in records}
    awkward = {u for u in ids if not re.fullmatch(r"u-\d{5}", u)}
    assert awkward
    assert any(not u.isascii() for u in awkward)


def test_interactions_carry_a_full_context(records):
    fields = {"page_url", "page_title", "hostname", "country", "browser", "os", "device"}
    for record in records:
        if record["type"] in INTERACTIONS:
            assert fields | {"language"} <= set(record["context"])


def test_identifies_users_companies_and_moves(records):
    identifies = [r for r in records if r["type"] == "identify"]
    first_traits = [r["traits"] for r in identifies if "name" in r["traits"]]
    assert any("created_at" not in t for t in first_traits)
    assert any("country" not in t for t in first_traits)
    companies: dict[str, set[str]] = defaultdict(set)
    for r in identifies:
        if "company" in r:
            companies[r["user_id"]].add(r["company"]["id"])
    assert any(len(ids) > 1 for ids in companies.values())  # somebody changed company


def test_delete_falls_between_records_of_the_user(records):
    deletes = [r for r in records if r["type"] == "command" and r["command"] == "delete"]
    assert deletes
    for delete in deletes:
        mine = [
            at(r)
            for r in records
            if r["type"] != "command"
            and r["user_id"] == delete["user_id"]
            and r["app_id"] == delete["app_id"]
        ]
        t = at(delete)
        assert any(x <= t for x in mine) and any(x > t for x in mine)


def test_session_gap_edge_cases_are_present():
    gaps: Counter[int] = Counter()
    per_user: dict[str, list[int]] = defaultdict(list)
    for r in generate(users=600, end_ms=END):
        if r["type"] in INTERACTIONS:
            per_user[r["user_id"]].append(at(r))
    for times in per_user.values():
        times.sort()
        gaps.update(b - a for a, b in pairwise(times))
    assert gaps[30 * 60_000] and gaps[30 * 60_000 + 1]


def test_write_jsonl_round_trips(tmp_path):
    plain = generate(users=20, commands=True, end_ms=END)
    buffer = io.StringIO()
    assert write_jsonl(plain, buffer) == len(plain)
    assert [json.loads(line) for line in buffer.getvalue().splitlines()] == plain
    path = tmp_path / "demo.jsonl"
    write_jsonl(iter(plain), path)
    assert path.read_text(encoding="utf-8") == buffer.getvalue()
