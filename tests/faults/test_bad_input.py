"""Fuzzed bad input next to good records, through the real worker: every bad record is
dead-lettered once with its reason and bytes, the worker lives, every good record lands, and
no key outside the good entities' own keys appears — whatever their ids contain."""

from __future__ import annotations

import json
import random
import re
import time
from typing import Any

import msgpack
import pytest
import reference as ref
from compare import compare_users

from projections import keys
from schemas.generate import generate
from streams.topics import Topics, record_key

# one xdist process runs every fault test: they share the private stack and restart it
pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("faults")]

APP = "acme-app"
# Ids that would reach other keys or widen a pattern if a key part were not escaped.
TRICKY = [
    "a:b",
    "{x}",
    "}{",
    "*",
    "?",
    "[a-z]",
    "%41",
    "x\\y",
    " spaced ",
    "ps:acme-app:u:{u-00001}",
    "ü\u2028ünï",
    "emoji-😀",
    "h",
    "_st",
    "_x",
    "m:u",
    "a:2026-11-01",  # a company's member days field is md:<user>:<day>
]


def tricky_records(now_ms: int) -> list[dict[str, Any]]:
    out = []
    for n, user in enumerate(TRICKY):
        base = {"app_id": APP, "user_id": user, "timestamp": now_ms - 3_600_000 + n * 1000}
        out.append(
            {
                **base,
                "type": "identify",
                "event_id": f"t{n}-i",
                "traits": {"name": user, "x:y": "{z}"},
                "company": {"id": f"co-{user}", "name": user},
            }
        )
        for k in range(3):
            at = base["timestamp"] + k * 60_000
            out.append(
                {
                    **base,
                    "type": "track",
                    "event_id": f"t{n}-{k}",
                    "timestamp": at,
                    "name": f"ev:{user}",
                    "context": {"page_url": f"https://app.example.com/{user}?q=*"},
                }
            )
    return out


def bad_values(rng: random.Random, now_ms: int) -> list[bytes]:
    """Many kinds of bad bytes: random noise, broken encodings, hostile shapes and values."""
    good = {
        "type": "track",
        "app_id": APP,
        "user_id": "u-bad",
        "event_id": "e",
        "timestamp": now_ms,
        "name": "n",
    }

    def pack(obj: Any) -> bytes:
        return msgpack.packb(obj, use_bin_type=True)

    def nested(depth: int) -> Any:
        value: Any = 1
        for _ in range(depth):
            value = {"a": value} if rng.random() < 0.5 else [value]
        return value

    out = [rng.randbytes(rng.randint(0, 3000)) for _ in range(60)]
    out += [b"", b"\x00", b"{", b"{}", b"[]", b"null", b"\xc1", b"\x81"]
    out += [pack(good)[: rng.randint(1, 40)] for _ in range(10)]  # truncated
    out += [b'{"type": "track", "name": "\\ud800"' + b"x" * rng.randint(0, 50) for _ in range(3)]
    out += [b"\x81\xa4name\xa3\xff\xfe\xfd", pack({**good, "name": b"\xff\xfe"})]
    out += [(b'{"a":' * 5000) + b"1" + (b"}" * 5000), pack({**good, "properties": nested(300)})]
    out += [pack({**good, "properties": {f"k{i}": i for i in range(10_000)}})]
    out += [pack({**good, "name": "n" * 200_000}), pack({**good, "properties": {"s": "x" * 9000}})]
    wrong: list[dict[str, Any]] = [
        {"user_id": 7},
        {"user_id": ""},
        {"user_id": "a\nb"},
        {"user_id": "a\x00b"},
        {"user_id": "x" * 300},
        {"app_id": "a:b"},
        {"app_id": "{x}"},
        {"app_id": "*"},
        {"app_id": ""},
        {"event_id": ["e"]},
        {"event_id": ""},
        {"timestamp": "yesterday"},
        {"timestamp": float("nan")},
        {"timestamp": 2**64 - 1},
        {"timestamp": now_ms + 3 * 86_400_000},
        {"timestamp": 0},
        {"name": None},
        {"name": {"a": 1}},
        {"kind": "other"},
        {"properties": [1, 2]},
        {"properties": {"a": {"b": 1}}},
        {"context": "x"},
        {"context": {"country": "Narnia"}},
        {"type": "purchase"},
        {"type": None},
    ]
    out += [pack({**good, **w}) for w in wrong]
    out += [pack({1: 2, **good}), pack({**good, "properties": {"b": b"\x00"}}), pack([good])]
    out += [msgpack.packb(msgpack.ExtType(5, b"x")), pack({**good, "traits": {"a": 1}})[:-1]]
    out += [json.dumps({**good, "name": 5}).encode(), b"\xef\xbb\xbf" + json.dumps(good).encode()]
    return out


def test_fuzzed_bad_input_is_dead_lettered_and_touches_nothing_else(pipeline: Any) -> None:
    rng = random.Random(61)
    now_ms = int(time.time() * 1000)
    good = generate(users=40, days=10, end_ms=now_ms, seed=61, duplicates=0.05, shuffle=True)
    good += tricky_records(now_ms)
    topics = Topics(pipeline.settings.topic_prefix)
    items: list[tuple[str, bytes | None, bytes]] = [
        (topics.for_type(r["type"]), record_key(r["app_id"], r["user_id"]), msgpack.packb(r))
        for r in good
    ]
    bad = bad_values(rng, now_ms)
    for value in bad:  # each at a random place, on a random source topic, with any key
        key = rng.choice([None, b"", rng.randbytes(8), record_key(APP, "u-00001")])
        items.insert(rng.randint(0, len(items)), (rng.choice(topics.sources), key, value))

    pipeline.start_worker()
    pipeline.produce(items)
    status = pipeline.wait_idle()

    # Every bad record is in the DLQ once, with its bytes and a reason that is not a bug.
    letters = pipeline.dead_letters(len(bad))
    assert status["dlq"] == len(bad) == len(letters)
    assert sorted(letter["value"] for letter in letters) == sorted(bad)
    assert len({(lt["topic"], lt["partition"], lt["offset"]) for lt in letters}) == len(bad)
    reasons = {letter["reason"] for letter in letters}
    assert "decoder_error" not in reasons and all(letter["detail"] for letter in letters)
    assert all(w.poll() is None for w in pipeline.workers), "bad input must not stop the worker"

    # Every good record landed: every view of every user equals the batch computation.
    assert status["groups"][0]["processed"] == len(items)
    assert compare_users(pipeline, good, now_ms) >= 40 + len(TRICKY)

    # Only the good entities' own keys exist (plus their app's indexes): no id reached
    # another key, and no bad record made one.
    ns = pipeline.settings.namespace
    users = ref.user_ids(good, now_ms=now_ms)
    companies = ref.company_ids(good, now_ms=now_ms)
    expected = {keys.user(ns, a, u) for a, u in users} | {
        k for a, c in companies for k in (keys.company(ns, a, c), keys.company_users(ns, a, c))
    }
    expected |= {keys.meta(ns), keys.marker(ns, "0")}  # the namespace's own bookkeeping
    found = {k.decode() for k in pipeline.redis().scan_iter(match=f"{ns}:*", count=1000)}
    indexes = {k for k in found if k.startswith((f"{ns}:{APP}:ix:", f"{ns}:{APP}:due:"))}
    assert found - indexes == expected
    # ... and each holds its id escaped: one hash tag, no glob or separator characters.
    safe = re.compile(rf"{ns}:{APP}:(u|c|cu):\{{[^:{{}}*?\[\]\\\s]+\}}")
    assert [k for k in expected if not safe.fullmatch(k) and "::" not in k] == []
    assert {keys.user(ns, APP, u) for u in TRICKY} <= found
