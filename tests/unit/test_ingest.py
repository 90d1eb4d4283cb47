"""Triage of consumed messages: good records keep their position, bad ones become dead letters."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import streams.ingest as ingest
from projections.step import Positioned
from schemas.codec import Rejected, decode, encode
from schemas.limits import HOUR_MS, Limits
from schemas.models import DeadLetter
from streams.ingest import triage
from streams.topics import Topics, key_of

NOW = 1_795_000_000_000
L = Limits()
T = Topics()
DLQ_FIELDS = {"reason", "detail", "topic", "partition", "offset", "key", "value", "failed_at"}


@dataclass
class Msg:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


def event(rtype: str, /, **over: Any) -> dict[str, Any]:
    own = {
        "identify": {"traits": {"plan": "pro"}},
        "track": {"name": "Report Created"},
        "page": {"url": "https://app.example.com/"},
        "feedback": {"survey_id": "s1", "survey_type": "nps", "score": 9},
        "content": {"content_id": "c1", "content_type": "banner", "action": "clicked"},
        "alias": {"previous_id": "anon-1"},
    }
    if rtype == "command":
        obj = {
            "type": "command",
            "command": "delete",
            "command_id": "cmd-1",
            "issued_at": NOW,
            "app_id": "app",
            "user_id": "u1",
        }
    else:
        obj = {
            "type": rtype,
            "app_id": "app",
            "user_id": "u1",
            "event_id": "e1",
            "timestamp": NOW,
            **own[rtype],
        }
    obj.update(over)
    return obj


def msg(obj: Any, offset: int, *, topic: str | None = None, partition: int = 0, raw=None) -> Msg:
    value = raw if raw is not None else encode(obj)
    if topic is None:
        topic = T.for_type(obj["type"])
    key = key_of(obj) if isinstance(obj, dict) else b"k"
    return Msg(topic, partition, offset, key, value)


def letter(raw: bytes) -> dict[str, Any]:
    """A DLQ value, decoded as a consumer of profiles.dlq would."""
    assert raw[:1] != b"{"
    data = msgpack.unpackb(raw, raw=False)
    assert set(data) == DLQ_FIELDS
    DeadLetter.model_validate(data)  # the documented DLQ record
    return data


def test_mixed_batch() -> None:
    good_track = event("track", event_id="t1")
    good_identify = event("identify", event_id="i1", user_id="u:{2}")
    good_command = event("command", command_id="c1")
    good_content = event("content", event_id="k1")
    good_alias = event("alias", event_id="a1", timestamp=NOW - 500 * 86_400_000)
    unmerge = event("command", command_id="c2", command="unmerge")
    messages = [
        msg(good_track, 10, partition=3),
        Msg(T.for_type("track"), 3, 11, b"app:u1", b"\xc1\xc1garbage"),
        msg(good_identify, 5, partition=1, raw=json.dumps(good_identify).encode()),
        msg(event("identify", event_id="i2"), 12, topic=T.for_type("track"), partition=3),
        Msg(T.for_type("page"), 0, 7, None, None),
        msg(good_command, 99, partition=2),
        msg(event("page", timestamp=NOW + 24 * HOUR_MS + 1), 8),
        Msg(T.for_type("feedback"), 4, 1, b"app:u1", b'{"type": "feedback",'),
        msg(event("feedback", score=11), 2, partition=4),
        msg(good_content, 0, partition=6),
        Msg(T.for_type("content"), 6, 1, b"", encode([1, 2, 3])),
        msg(good_alias, 13, partition=1),
        msg(event("alias", event_id="a2", previous_id="u1"), 14, partition=1),
        msg(event("alias", event_id="a3"), 15, topic=T.for_type("track")),
        msg(unmerge, 16, partition=2),
    ]
    before = int(time.time() * 1000)
    good, dead = triage(messages, T, L, NOW)
    after = int(time.time() * 1000)

    assert good == [
        Positioned(decode(encode(good_track), L, NOW), "profiles.track", 3, 10),
        Positioned(decode(encode(good_identify), L, NOW), "profiles.identify", 1, 5),
        Positioned(decode(encode(good_command), L, NOW), "profiles.commands", 2, 99),
        Positioned(decode(encode(good_content), L, NOW), "profiles.content", 6, 0),
        Positioned(decode(encode(good_alias), L, NOW), "profiles.identify", 1, 13),
        Positioned(decode(encode(unmerge), L, NOW), "profiles.commands", 2, 16),
    ]
    assert messages[11].key == b"app:anon-1"  # an alias is keyed by its previous id
    assert good[1].record.user_id == "u:{2}"

    expected = [
        (messages[1], "invalid_msgpack"),
        (messages[3], "wrong_topic"),
        (messages[4], "empty_record"),
        (messages[6], "timestamp_in_future"),
        (messages[7], "invalid_json"),
        (messages[8], "invalid_field"),
        (messages[10], "not_a_map"),
        (messages[12], "invalid_field"),
        (messages[13], "wrong_topic"),
    ]
    assert len(dead) == len(expected)
    for (message, raw), (original, reason) in zip(dead, expected, strict=True):
        assert message is original
        data = letter(raw)
        assert data["reason"] == reason
        assert isinstance(data["detail"], str) and data["detail"]
        assert (data["topic"], data["partition"], data["offset"]) == (
            original.topic,
            original.partition,
            original.offset,
        )
        assert data["key"] == original.key
        assert data["value"] == (original.value if original.value is not None else b"")
        assert isinstance(data["value"], bytes)
        assert before <= data["failed_at"] <= after
    assert "profiles.identify" in letter(dead[1][1])["detail"]
    assert letter(dead[5][1])["detail"].startswith("score")


@pytest.mark.parametrize(
    ("rtype", "topic"),
    [
        ("identify", "profiles.track"),
        ("track", "profiles.identify"),
        ("page", "profiles.commands"),
        ("command", "profiles.command"),
        ("command", "profiles.page"),
        ("feedback", "profiles.dlq"),
        ("content", "elsewhere"),
        ("alias", "profiles.commands"),
        ("alias", "profiles.alias"),
        ("identify", "profiles.alias"),
    ],
)
def test_wrong_topic(rtype: str, topic: str) -> None:
    message = msg(event(rtype), 4, topic=topic, partition=1)
    good, dead = triage([message], T, L, NOW)
    assert good == []
    assert [m for m, _ in dead] == [message]
    data = letter(dead[0][1])
    assert data["reason"] == "wrong_topic"
    assert T.for_type(rtype) in data["detail"]
    assert (data["topic"], data["partition"], data["offset"]) == (topic, 1, 4)


def test_topic_prefix_is_respected() -> None:
    staged = Topics(prefix="stage.")
    record = event("track")
    good, dead = triage([msg(record, 0, topic="stage.track")], staged, L, NOW)
    assert [p.topic for p in good] == ["stage.track"] and dead == []
    good, dead = triage([msg(record, 0, topic="profiles.track")], staged, L, NOW)
    assert good == [] and letter(dead[0][1])["reason"] == "wrong_topic"


def test_limits_and_now_are_passed_through() -> None:
    record = event("page", timestamp=NOW - 8 * 86_400_000, properties={})
    good, dead = triage([msg(record, 0)], T, L, NOW)
    assert len(good) == 1 and dead == []
    good, dead = triage([msg(record, 0)], T, Limits(retention_days=7), NOW)
    assert good == [] and letter(dead[0][1])["reason"] == "timestamp_too_old"
    good, dead = triage([msg(record, 0)], T, L, NOW + 400 * 86_400_000)
    assert good == [] and letter(dead[0][1])["reason"] == "timestamp_too_old"


def test_empty_input() -> None:
    assert triage([], T, L, NOW) == ([], [])
    assert triage(iter([]), T, L, NOW) == ([], [])


def test_accepts_any_iterable() -> None:
    records = [event("track", event_id=f"e{i}") for i in range(3)]
    good, dead = triage((msg(r, i) for i, r in enumerate(records)), T, L, NOW)
    assert [p.offset for p in good] == [0, 1, 2] and dead == []


def test_a_decoder_bug_becomes_a_dead_letter(monkeypatch: pytest.MonkeyPatch) -> None:
    real = ingest.decode
    poison = encode(event("track", event_id="poison"))

    def buggy(raw: bytes, limits: Limits, now_ms: int) -> Any:
        if raw == poison:
            raise KeyError("boom")
        return real(raw, limits, now_ms)

    monkeypatch.setattr(ingest, "decode", buggy)
    before = event("track", event_id="a")
    after = event("track", event_id="b")
    messages = [msg(before, 0), Msg("profiles.track", 0, 1, b"k", poison), msg(after, 2)]
    good, dead = triage(messages, T, L, NOW)
    assert [p.record.event_id for p in good] == ["a", "b"]
    assert [p.offset for p in good] == [0, 2]
    data = letter(dead[0][1])
    assert data["reason"] == "decoder_error"
    assert "KeyError" in data["detail"]
    assert data["value"] == poison and data["offset"] == 1


def test_dead_letter_of_a_message_without_value_or_key() -> None:
    message = Msg("profiles.page", 2, 17, None, None)
    data = letter(ingest.dead_letter("empty_record", "nothing", message))
    assert data["value"] == b"" and data["key"] is None
    assert (data["reason"], data["detail"]) == ("empty_record", "nothing")
    assert (data["topic"], data["partition"], data["offset"]) == ("profiles.page", 2, 17)


# --------------------------------------------------------------------------- fuzz

TRICKY = ":{}*?\n"
tricky_text = st.text(
    st.sampled_from(list(TRICKY)) | st.characters(blacklist_categories=("Cs",)),
    min_size=0,
    max_size=12,
)
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | tricky_text
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(tricky_text, inner, max_size=4),
    max_leaves=12,
)
msgpack_scalars = (
    json_scalars | st.binary(max_size=6) | st.integers(0, 2**64 - 1) | st.floats(allow_nan=True)
)
msgpack_keys = tricky_text | st.integers(-5, 5) | st.binary(max_size=3) | st.none()
msgpack_values = st.recursive(
    msgpack_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(msgpack_keys, inner, max_size=4),
    max_leaves=12,
)
RECORD_TYPES = ["identify", "track", "page", "feedback", "content", "alias", "command"]
FIELDS = [
    "type",
    "app_id",
    "user_id",
    "event_id",
    "timestamp",
    "name",
    "traits",
    "score",
    "command",
    "issued_at",
    "step",
    "context",
    "previous_id",
]


@st.composite
def good_records(draw: st.DrawFn) -> dict[str, Any]:
    """A valid record whose ids are full of characters that are special elsewhere."""
    rtype = draw(st.sampled_from(RECORD_TYPES))
    user = draw(
        st.text(
            st.sampled_from(list(":{}*?")) | st.characters(categories=("L", "N", "P", "S")),
            min_size=1,
            max_size=20,
        )
    )
    eid = draw(
        st.text(
            st.sampled_from(list(":{}*?")) | st.characters(categories=("L", "N")),
            min_size=1,
            max_size=20,
        )
    )
    app = draw(st.text("abc._-09", min_size=1, max_size=10))
    at = draw(st.integers(NOW - 400 * 86_400_000, NOW + 24 * HOUR_MS))
    if rtype == "command":
        return event("command", command_id=eid, issued_at=at, app_id=app, user_id=user)
    if rtype == "alias":  # the event id doubles as a previous id (never the user id)
        previous = eid if eid != user else f"{eid}'"
        ids = {"app_id": app, "user_id": user, "previous_id": previous}
        return event(rtype, event_id=eid, timestamp=at, **ids)
    return event(rtype, event_id=eid, timestamp=at, app_id=app, user_id=user)


@st.composite
def mutants(draw: st.DrawFn) -> dict[Any, Any]:
    """A valid record with one field replaced by anything, or dropped, or ids made tricky."""
    obj: dict[Any, Any] = draw(good_records())
    field = draw(st.sampled_from(FIELDS))
    how = draw(st.sampled_from(["replace", "drop", "tricky"]))
    if how == "drop":
        obj.pop(field, None)
    elif how == "tricky":
        obj[field] = draw(tricky_text)
    else:
        obj[field] = draw(json_values)
    return obj


@st.composite
def inputs(draw: st.DrawFn) -> tuple[str, Any, bytes | None]:
    """(kind, the object if any, the message value)."""
    kind = draw(
        st.sampled_from(["good", "good_json", "bytes", "json", "msgpack", "mutant", "none"])
    )
    if kind in ("good", "good_json"):
        obj = draw(good_records())
        return kind, obj, encode(obj) if kind == "good" else json.dumps(obj).encode()
    if kind == "bytes":
        return kind, None, draw(st.binary(max_size=40) | st.just(b"{") | st.just(b"{\xff}"))
    if kind == "json":
        value = draw(json_values | st.dictionaries(tricky_text, json_values, max_size=5))
        return kind, value, json.dumps(value, ensure_ascii=draw(st.booleans())).encode()
    if kind == "msgpack":
        value = draw(msgpack_values)
        return kind, value, msgpack.packb(value, use_bin_type=True)
    if kind == "mutant":
        obj = draw(mutants())
        if draw(st.booleans()):
            return kind, obj, json.dumps(obj).encode()
        return kind, obj, msgpack.packb(obj, use_bin_type=True)
    return kind, None, None


SOURCES = [*T.sources, "profiles.dlq", "other"]


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.lists(st.tuples(inputs(), st.sampled_from(SOURCES), st.integers(0, 5)), max_size=12))
def test_triage_fuzz_never_raises_and_loses_nothing(items: list[Any]) -> None:
    messages = []
    for offset, ((kind, obj, value), topic, partition) in enumerate(items):
        if kind in ("good", "good_json"):
            topic = T.for_type(obj["type"])
        key = key_of(obj) if kind.startswith("good") else None
        messages.append(Msg(topic, partition, offset, key, value))

    good, dead = triage(messages, T, L, NOW)

    # every input comes out exactly once, in order
    assert len(good) + len(dead) == len(messages)
    out = sorted([p.offset for p in good] + [m.offset for m, _ in dead])
    assert out == list(range(len(messages)))
    assert [p.offset for p in good] == sorted(p.offset for p in good)
    assert [m.offset for m, _ in dead] == sorted(m.offset for m, _ in dead)

    # every good one is accepted, exactly as it would be on its own
    good_at = {p.offset: p for p in good}
    for message, (kind, obj, _value) in zip(messages, [i[0] for i in items], strict=True):
        if kind in ("good", "good_json"):
            placed = good_at[message.offset]
            assert placed == Positioned(
                decode(message.value, L, NOW), message.topic, message.partition, message.offset
            )
            assert placed.record.user_id == obj["user_id"]
            assert key_of(placed.record.model_dump()) == message.key
        if message.offset in good_at:
            alone, _ = triage([message], T, L, NOW)
            assert alone == [good_at[message.offset]]

    # every dead one carries its original bytes, position and a codec reason
    for message, raw in dead:
        data = letter(raw)
        assert data["value"] == (message.value or b"")
        assert (data["topic"], data["partition"], data["offset"]) == (
            message.topic,
            message.partition,
            message.offset,
        )
        assert data["reason"] != "decoder_error", data["detail"]  # a codec bug, not bad input
        try:
            decoded = decode(message.value or b"", L, NOW)
        except Rejected as exc:
            assert data["reason"] == exc.reason
        else:
            assert data["reason"] == "wrong_topic"
            assert message.topic != T.for_type(decoded.type)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["app_id", "user_id", "event_id"]),
            st.text(st.sampled_from(list(TRICKY + "aé")), min_size=1, max_size=8),
        ),
        min_size=1,
        max_size=6,
    )
)
def test_tricky_ids(changes: list[tuple[str, str]]) -> None:
    records = [event("track", **{field: value}) for field, value in changes]
    messages = [msg(r, i) for i, r in enumerate(records)]
    good, dead = triage(messages, T, L, NOW)
    assert len(good) + len(dead) == len(messages)
    for (field, value), message in zip(changes, messages, strict=True):
        bad = "\n" in value or (field == "app_id" and any(c in value for c in ":{}*?é"))
        placed = [p for p in good if p.offset == message.offset]
        if bad:
            assert placed == []
            [data] = [letter(raw) for m, raw in dead if m is message]
            assert data["reason"] == "invalid_field"
            assert data["detail"].startswith(field)
        else:
            assert getattr(placed[0].record, field) == value
