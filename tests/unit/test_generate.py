"""The demo data generator: valid, deterministic, every record kind, duplicates and edge cases."""

from __future__ import annotations

import hashlib
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


# --------------------------------------------------------------------------- anonymous visitors

VISITORS = {"users": 300, "commands": True, "anonymous": 0.3, "end_ms": END}


@pytest.fixture(scope="module")
def visitors() -> list[dict]:
    return generate(**VISITORS)


def test_anonymous_off_is_the_output_of_before(records):
    """The option off changes no byte: these are the digests of the generator before it
    had the option (other tests and benchmarks depend on its output per seed)."""
    for args, digest in [
        (
            {"users": 60, "commands": True, "duplicates": 0.05, "shuffle": True, "seed": 3},
            "12b2a2725557ddb22533840b1350267be3e5aa4b831b57aa6f98ec7435c777bc",
        ),
        (
            {"users": 60, "commands": True, "seed": 1},
            "16591256b3d8e75fb4df4e2da16da08e3896d2e447b1d545202da32d5bfbb25e",
        ),
    ]:
        buffer = io.StringIO()
        write_jsonl(generate(end_ms=END, **args), buffer)
        assert hashlib.sha256(buffer.getvalue().encode()).hexdigest() == digest, args
    assert generate(**{**ARGS, "anonymous": 0.0}) == records
    assert not any(r["type"] == "alias" for r in records)


def test_anonymous_is_deterministic_per_seed_and_validates(visitors):
    assert generate(**VISITORS) == visitors
    assert list(iter_records(**VISITORS)) == visitors
    assert generate(**{**VISITORS, "seed": 2}) != visitors
    limits = Limits()
    for record in visitors:
        validate(record, limits, END)
    with pytest.raises(ValueError, match="anonymous"):
        generate(users=5, end_ms=END, anonymous=1.5)


def test_aliases_join_anonymous_ids_that_have_records(visitors):
    aliases = [r for r in visitors if r["type"] == "alias"]
    assert aliases
    events = [r for r in visitors if r["type"] not in ("alias", "command")]
    by_id: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for r in events:
        by_id[r["app_id"], r["user_id"]].append(r)
    into: dict[tuple[str, str], set[str]] = defaultdict(set)
    for alias in aliases:
        previous = (alias["app_id"], alias["previous_id"])
        assert alias["previous_id"].startswith("anon-")
        assert alias["previous_id"] != alias["user_id"]
        mine = by_id[previous]
        assert mine, alias  # the anonymous id has records to join
        assert all(r["type"] in INTERACTIONS for r in mine)  # a visitor has no traits
        assert max(at(r) for r in mine) <= at(alias)  # tracked anonymously until sign-up
        assert by_id[alias["app_id"], alias["user_id"]]  # the known id has records too
        into[alias["app_id"], alias["user_id"]].add(alias["previous_id"])
    assert len({a["previous_id"] for a in aliases}) == len(aliases)  # one merge per id
    assert any(len(ids) == 2 for ids in into.values())  # two devices into one user
    assert any(len(ids) == 1 for ids in into.values())


def test_some_aliases_arrive_late_and_the_rest_is_in_time_order(visitors):
    times = [at(r) for r in visitors]
    late = [i for i in range(1, len(times)) if times[i] < max(times[:i])]
    assert late and all(visitors[i]["type"] == "alias" for i in late)
    assert visitors[-1]["type"] == "alias"
    in_time = [t for i, t in enumerate(times) if i not in set(late)]
    assert in_time == sorted(in_time)


def test_one_merge_is_undone_with_commands_only(visitors):
    unmerges = [r for r in visitors if r["type"] == "command" and r["command"] == "unmerge"]
    [unmerge] = unmerges
    [alias] = [
        r for r in visitors if r["type"] == "alias" and r["previous_id"] == unmerge["user_id"]
    ]
    assert unmerge["app_id"] == alias["app_id"]
    assert at(unmerge) > at(alias)  # the latest decides: the id stands alone again
    plain = generate(**{**VISITORS, "commands": False})
    assert not any(r["type"] == "command" for r in plain)
    assert any(r["type"] == "alias" for r in plain)


def test_anonymous_only_relabels_and_adds(visitors):
    """The visitors' users are the same people: the users who never were anonymous have the
    records they have without the option."""
    plain = generate(**{**VISITORS, "anonymous": 0.0})
    joined = {r["user_id"] for r in visitors if r["type"] == "alias"}
    known = [r for r in visitors if r["type"] != "alias" and not r["user_id"].startswith("anon-")]
    unchanged = [r for r in plain if r["user_id"] not in joined]
    assert unchanged == [r for r in known if r["user_id"] not in joined]
    assert len(unchanged) < len(plain)
