"""The wire contract (docs/design.md §2): codec round trips, every limit at its edge, every
reason."""

from __future__ import annotations

import calendar
import copy
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.codec import Rejected, decode, encode, validate
from schemas.export import export_json_schemas
from schemas.limits import DAY_MS, HOUR_MS, Limits
from schemas.models import (
    RECORD_TYPES,
    Alias,
    Command,
    Content,
    Feedback,
    Identify,
    Page,
    Track,
)

NOW = 1_795_000_000_000  # 2026-11-18T08:26:40Z, fixed so runs are reproducible
L = Limits()
NEWEST = NOW + 24 * HOUR_MS
OLDEST = NOW - 400 * DAY_MS
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

MODEL_OF = {
    "identify": Identify,
    "track": Track,
    "page": Page,
    "feedback": Feedback,
    "content": Content,
    "alias": Alias,
    "command": Command,
}
CONTENT_TYPES = ["flow", "spotlight", "banner", "checklist"]
CONTENT_ACTIONS = ["seen", "started", "step_completed", "completed", "dismissed", "clicked"]
COMMANDS = ["exclude", "include", "reset_content", "delete", "unmerge"]
TRACK_KINDS = ["tracked", "labeled", "feature_tag"]

OWN_FIELDS = {
    "identify": {"traits": {"plan": "pro"}},
    "track": {"name": "Report Created"},
    "page": {"url": "https://app.example.com/reports"},
    "feedback": {"survey_id": "s1", "survey_type": "nps", "score": 7},
    "content": {"content_id": "c1", "content_type": "flow", "action": "seen"},
    "alias": {"previous_id": "anon-1"},
}


def rec(rtype: str = "track", /, **over: Any) -> dict[str, Any]:
    """A minimal valid record of type `rtype`, with some fields overridden."""
    if rtype == "command":
        obj: dict[str, Any] = {
            "type": "command",
            "command": "exclude",
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
            **copy.deepcopy(OWN_FIELDS[rtype]),
        }
    obj.update(over)
    return obj


def msgpack_of(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def json_of(obj: Any) -> bytes:
    return json.dumps(obj).encode()


def rejected(raw: bytes, limits: Limits = L, now: int = NOW) -> Rejected:
    with pytest.raises(Rejected) as info:
        decode(raw, limits, now)
    return info.value


def rejected_obj(obj: dict[str, Any], limits: Limits = L, now: int = NOW) -> Rejected:
    with pytest.raises(Rejected) as info:
        validate(obj, limits, now)
    return info.value


def reasons_everywhere(obj: dict[str, Any], limits: Limits = L, now: int = NOW) -> set[str]:
    """The reason through validate, the msgpack form and the JSON form (must all agree)."""
    return {
        rejected_obj(copy.deepcopy(obj), limits, now).reason,
        rejected(msgpack_of(obj), limits, now).reason,
        rejected(json_of(obj), limits, now).reason,
    }


def accepted_everywhere(obj: dict[str, Any], limits: Limits = L, now: int = NOW) -> Any:
    record = validate(copy.deepcopy(obj), limits, now)
    assert decode(msgpack_of(obj), limits, now) == record
    assert decode(json_of(obj), limits, now) == record
    return record


def typed(mapping: dict[str, Any]) -> dict[str, tuple[type, Any]]:
    """Values with their exact types, so True vs 1 vs 1.0 are told apart."""
    return {k: (type(v), v) for k, v in mapping.items()}


# --------------------------------------------------------------------------- timestamps


def rfc3339(ms: int, offset_minutes: int, *, digits: int = 3, extra_us: int = 0, z: bool = False):
    """Format an instant independently of the code under test (datetime arithmetic only)."""
    at = EPOCH + timedelta(milliseconds=ms, microseconds=extra_us)
    local = at.astimezone(timezone(timedelta(minutes=offset_minutes)))
    text = f"{local:%Y-%m-%dT%H:%M:%S}"
    if digits == 3:
        text += f".{local.microsecond // 1000:03d}"
    elif digits == 6:
        text += f".{local.microsecond:06d}"
    if z:
        assert offset_minutes == 0
        return text + "Z"
    sign = "-" if offset_minutes < 0 else "+"
    hours, minutes = divmod(abs(offset_minutes), 60)
    return f"{text}{sign}{hours:02d}:{minutes:02d}"


@st.composite
def wire_times(draw: st.DrawFn, lo: int = OLDEST, hi: int = NEWEST) -> tuple[Any, int]:
    """A wire timestamp and the UTC epoch ms it must convert to."""
    ms = draw(st.integers(lo, hi))
    style = draw(st.sampled_from(["int", "Z", "offset"]))
    if style == "int":
        return ms, ms
    digits = draw(st.sampled_from([0, 3, 6]))
    extra_us = draw(st.integers(0, 999)) if digits == 6 else 0
    offset = 0 if style == "Z" else draw(st.integers(-(23 * 60 + 59), 23 * 60 + 59))
    text = rfc3339(ms, offset, digits=digits, extra_us=extra_us, z=style == "Z")
    expected = ms - ms % 1000 if digits == 0 else ms  # sub-ms digits are truncated
    return text, expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-18T00:00:00Z", calendar.timegm((2026, 11, 18, 0, 0, 0)) * 1000),
        ("2026-11-18T00:00:00.123Z", calendar.timegm((2026, 11, 18, 0, 0, 0)) * 1000 + 123),
        ("2026-11-18T05:30:00+05:30", calendar.timegm((2026, 11, 18, 0, 0, 0)) * 1000),
        ("2026-11-17T19:00:00-05:00", calendar.timegm((2026, 11, 18, 0, 0, 0)) * 1000),
        ("2026-11-18T00:00:00.999999+00:00", calendar.timegm((2026, 11, 18, 0, 0, 0)) * 1000 + 999),
        ("2026-11-18T00:30:00+01:00", calendar.timegm((2026, 11, 17, 23, 30, 0)) * 1000),
        ("2026-11-18T00:00:00-00:00", calendar.timegm((2026, 11, 18, 0, 0, 0)) * 1000),
    ],
)
def test_rfc3339_known_instants(text: str, expected: int) -> None:
    record = accepted_everywhere(rec("track", timestamp=text))
    assert record.timestamp == expected
    command = accepted_everywhere(rec("command", issued_at=text))
    assert command.issued_at == expected


@settings(max_examples=150, deadline=None)
@given(wire_times())
def test_wire_timestamp_converts_to_utc_ms(pair: tuple[Any, int]) -> None:
    wire, expected = pair
    assert validate(rec("page", timestamp=wire), L, NOW).timestamp == expected
    assert decode(msgpack_of(rec("command", issued_at=wire)), L, NOW).issued_at == expected


# --------------------------------------------------------------------------- round trips

ID_ALPHABET = st.characters(blacklist_categories=("Cc", "Cs"))
ids = st.text(ID_ALPHABET, min_size=1, max_size=24) | st.sampled_from(
    ["u:1", "{u}", "a*b?c", "ü:{*}?", "user@example.com", " ", "x" * 256]
)
app_ids = st.text("abcXYZ019._-", min_size=1, max_size=64)
short_text = st.text(max_size=20)
names = st.text(min_size=1, max_size=40)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | short_text
)
flat_maps = st.dictionaries(
    st.text(max_size=12).filter(lambda k: k not in ("created_at", "country")), scalars, max_size=6
)


@st.composite
def contexts(draw: st.DrawFn) -> dict[str, Any]:
    fields = ["page_url", "page_title", "hostname", "browser", "os", "device", "language"]
    ctx = {f: draw(short_text) for f in draw(st.lists(st.sampled_from(fields), unique=True))}
    if draw(st.booleans()):
        ctx["country"] = draw(st.sampled_from(["US", "de", "Fr", "jP"]))
    return ctx


@st.composite
def records(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, int]]:
    """A valid wire record of any type and the UTC ms its timestamps must become."""
    kind = draw(st.sampled_from(RECORD_TYPES))
    wire, expected = draw(wire_times())
    if kind == "command":
        obj: dict[str, Any] = {
            "type": "command",
            "command": draw(st.sampled_from(COMMANDS)),
            "command_id": draw(ids.filter(lambda s: len(s) <= 128)),
            "issued_at": wire,
            "app_id": draw(app_ids),
            "user_id": draw(ids),
        }
        if draw(st.booleans()):
            obj["reason"] = draw(short_text)
        return obj, {"at": expected}
    times = {"at": expected}
    obj = {
        "type": kind,
        "app_id": draw(app_ids),
        "user_id": draw(ids),
        "event_id": draw(ids.filter(lambda s: len(s) <= 128)),
        "timestamp": wire,
    }
    if draw(st.booleans()):
        obj["context"] = draw(contexts())
    if kind == "identify":
        traits = draw(flat_maps)
        if draw(st.booleans()):
            traits["created_at"] = draw(wire_times(lo=0, hi=NOW))[0]
        if draw(st.booleans()):
            traits["country"] = draw(st.sampled_from(["US", "DE", "GB"]))
        obj["traits"] = traits
        if draw(st.booleans()):
            company: dict[str, Any] = {"id": draw(ids), "traits": draw(flat_maps)}
            if draw(st.booleans()):
                company["name"] = draw(short_text)
            if draw(st.booleans()):
                company["created_at"], times["company"] = draw(wire_times(lo=0, hi=NOW))
            obj["company"] = company
    elif kind == "track":
        obj["name"] = draw(names)
        if draw(st.booleans()):
            obj["kind"] = draw(st.sampled_from(TRACK_KINDS))
        obj["properties"] = draw(flat_maps)
    elif kind == "page":
        obj["url"] = draw(names)
        if draw(st.booleans()):
            obj["title"] = draw(short_text)
    elif kind == "alias":
        obj["previous_id"] = draw(ids.filter(lambda s: s != obj["user_id"]))
    elif kind == "feedback":
        obj["survey_id"] = draw(names)
        obj["survey_type"] = draw(st.sampled_from(["nps", "survey"]))
        if obj["survey_type"] == "nps" or draw(st.booleans()):
            obj["score"] = draw(st.integers(0, 10))
        if draw(st.booleans()):
            obj["question"] = draw(short_text)
        if draw(st.booleans()):
            obj["answer"] = draw(short_text)
    else:
        obj["content_id"] = draw(names)
        obj["content_type"] = draw(st.sampled_from(CONTENT_TYPES))
        obj["action"] = draw(st.sampled_from(CONTENT_ACTIONS))
        if draw(st.booleans()):
            obj["content_name"] = draw(short_text)
        if draw(st.booleans()):
            obj["step"] = draw(st.integers(0, 2**63 - 1))
    return obj, times


def check_fields(obj: dict[str, Any], record: Any, times: dict[str, int]) -> None:
    """The typed record carries exactly what the wire said (independently of the codec)."""
    expected_ms = times["at"]
    assert type(record) is MODEL_OF[obj["type"]]
    assert record.type == obj["type"]
    assert record.app_id == obj["app_id"]
    assert record.user_id == obj["user_id"]
    if isinstance(record, Command):
        assert record.issued_at == expected_ms
        assert (record.command, record.command_id) == (obj["command"], obj["command_id"])
        assert record.reason == obj.get("reason")
        return
    assert record.event_id == obj["event_id"]
    assert record.timestamp == expected_ms
    if "context" in obj:
        ctx = dict(obj["context"])
        if "country" in ctx:
            ctx["country"] = ctx["country"].upper()
        assert record.context is not None
        assert record.context.model_dump(exclude_none=True) == ctx
    else:
        assert record.context is None
    if isinstance(record, Identify):
        assert typed(record.traits) == typed(obj["traits"])
        if "company" in obj:
            assert record.company is not None
            assert record.company.id == obj["company"]["id"]
            assert typed(record.company.traits) == typed(obj["company"]["traits"])
            assert record.company.name == obj["company"].get("name")
            assert record.company.created_at == times.get("company")
        else:
            assert record.company is None
    elif isinstance(record, Track):
        assert record.name == obj["name"]
        assert record.kind == obj.get("kind", "tracked")
        assert typed(record.properties) == typed(obj["properties"])
    elif isinstance(record, Page):
        assert (record.url, record.title) == (obj["url"], obj.get("title"))
    elif isinstance(record, Feedback):
        assert (record.survey_id, record.survey_type) == (obj["survey_id"], obj["survey_type"])
        assert record.score == obj.get("score")
        assert type(record.score) is type(obj.get("score"))
        assert (record.question, record.answer) == (obj.get("question"), obj.get("answer"))
    elif isinstance(record, Content):
        assert (record.content_id, record.content_type) == (obj["content_id"], obj["content_type"])
        assert (record.action, record.step) == (obj["action"], obj.get("step"))
        assert record.content_name == obj.get("content_name")
    elif isinstance(record, Alias):
        assert record.previous_id == obj["previous_id"]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records())
def test_round_trip_msgpack_and_json(pair: tuple[dict[str, Any], dict[str, int]]) -> None:
    obj, expected_ms = pair
    original = copy.deepcopy(obj)
    record = validate(obj, L, NOW)
    assert obj == original  # validation does not touch its input
    check_fields(obj, record, expected_ms)

    packed = encode(obj)
    assert packed[:1] != b"{"  # a msgpack map never looks like JSON
    from_msgpack = decode(packed, L, NOW)
    assert from_msgpack == record
    check_fields(obj, from_msgpack, expected_ms)

    for raw in (json.dumps(obj).encode(), json.dumps(obj, ensure_ascii=False).encode()):
        assert raw[:1] == b"{"
        from_json = decode(raw, L, NOW)
        assert from_json == record
        check_fields(obj, from_json, expected_ms)


@pytest.mark.parametrize("content_type", CONTENT_TYPES)
@pytest.mark.parametrize("action", CONTENT_ACTIONS)
def test_every_content_type_and_action(content_type: str, action: str) -> None:
    obj = rec("content", content_type=content_type, action=action, step=3, content_name="Tour")
    record = accepted_everywhere(obj)
    assert isinstance(record, Content)
    assert (record.content_type, record.action, record.step) == (content_type, action, 3)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_kind(command: str) -> None:
    record = accepted_everywhere(rec("command", command=command, reason="gdpr"))
    assert isinstance(record, Command)
    assert (record.command, record.reason, record.issued_at) == (command, "gdpr", NOW)


def test_alias_joins_two_ids() -> None:
    obj = rec("alias", user_id="u:{known}", previous_id="anon-7f3e", context={"os": "iOS"})
    record = accepted_everywhere(obj)
    assert isinstance(record, Alias)
    assert (record.user_id, record.previous_id) == ("u:{known}", "anon-7f3e")
    assert (record.event_id, record.timestamp) == ("e1", NOW)


@pytest.mark.parametrize("same", ["u1", "ü:{*}?", "x" * 255])
def test_alias_into_itself_is_invalid(same: str) -> None:
    obj = rec("alias", user_id=same, previous_id=same)
    assert reasons_everywhere(obj) == {"invalid_field"}
    assert "previous_id must differ from user_id" in rejected_obj(obj).detail
    accepted_everywhere(rec("alias", user_id=same, previous_id=same + " "))  # ids are exact


def test_alias_is_never_too_old_but_may_not_be_from_the_future() -> None:
    """An alias is a link, not data: like a command it is accepted whatever its age."""
    for at in (NOW - 400 * DAY_MS - 1, rfc3339(NOW - 401 * DAY_MS, 60), 0):
        accepted_everywhere(rec("alias", timestamp=at))
    window = Limits(retention_days=7)
    accepted_everywhere(rec("alias", timestamp=NOW - 8 * DAY_MS), window)
    assert reasons_everywhere(rec("identify", timestamp=NOW - 8 * DAY_MS), window) == {
        "timestamp_too_old"
    }
    accepted_everywhere(rec("alias", timestamp=NEWEST))
    assert reasons_everywhere(rec("alias", timestamp=NEWEST + 1)) == {"timestamp_in_future"}


def test_unmerge_is_a_command_whose_user_is_the_previous_id() -> None:
    record = accepted_everywhere(rec("command", command="unmerge", user_id="anon-7f3e"))
    assert isinstance(record, Command)
    assert (record.command, record.user_id) == ("unmerge", "anon-7f3e")
    accepted_everywhere(rec("command", command="unmerge", issued_at=NOW - 500 * DAY_MS))


@pytest.mark.parametrize("kind", TRACK_KINDS)
def test_every_track_kind(kind: str) -> None:
    assert accepted_everywhere(rec("track", kind=kind)).kind == kind


def test_track_kind_defaults_to_tracked() -> None:
    assert accepted_everywhere(rec("track")).kind == "tracked"


@pytest.mark.parametrize("survey_type", ["nps", "survey"])
def test_feedback_survey_types(survey_type: str) -> None:
    record = accepted_everywhere(rec("feedback", survey_type=survey_type, score=0, answer="ok"))
    assert (record.survey_type, record.score, record.answer) == (survey_type, 0, "ok")


def test_survey_without_score_is_fine() -> None:
    obj = rec("feedback", survey_type="survey", answer="meh")
    del obj["score"]
    assert accepted_everywhere(obj).score is None


def test_identify_with_company_and_reserved_traits() -> None:
    obj = rec(
        "identify",
        traits={
            "name": "Ada",
            "email": "ada@example.com",
            "created_at": "2025-01-02T03:04:05+01:00",
            "country": "GB",
            "vip": True,
            "seats": 3,
            "ratio": 0.5,
            "nothing": None,
        },
        company={"id": "acme", "name": "Acme", "created_at": 1_700_000_000_000, "traits": {"a": 1}},
    )
    record = accepted_everywhere(obj)
    assert typed(record.traits) == typed(obj["traits"])
    assert record.company.created_at == 1_700_000_000_000
    assert record.company.traits == {"a": 1}


def test_unknown_fields_are_ignored() -> None:
    record = accepted_everywhere(rec("page", sdk_version="9.9", extra={"a": 1}))
    assert not hasattr(record, "sdk_version")


def test_context_country_is_upper_cased() -> None:
    assert accepted_everywhere(rec("page", context={"country": "de"})).context.country == "DE"


# --------------------------------------------------------------------------- limits


def test_max_keys_edge() -> None:
    ok = {f"k{i}": i for i in range(256)}
    too_many = {f"k{i}": i for i in range(257)}
    assert len(accepted_everywhere(rec("identify", traits=ok)).traits) == 256
    assert len(accepted_everywhere(rec("track", properties=ok)).properties) == 256
    assert reasons_everywhere(rec("identify", traits=too_many)) == {"too_many_keys"}
    assert reasons_everywhere(rec("track", properties=too_many)) == {"too_many_keys"}
    company = {"id": "acme", "traits": too_many}
    assert reasons_everywhere(rec("identify", company=company)) == {"too_many_keys"}


def test_max_keys_counts_the_top_level_map_too() -> None:
    obj = rec("page")
    obj.update({f"x{i}": 1 for i in range(256 - len(obj))})
    assert len(obj) == 256
    accepted_everywhere(obj)
    obj["one_more"] = 1
    assert reasons_everywhere(obj) == {"too_many_keys"}


def test_string_bytes_edge_ascii() -> None:
    accepted_everywhere(rec("track", properties={"s": "x" * 8192}))
    assert reasons_everywhere(rec("track", properties={"s": "x" * 8193})) == {"string_too_long"}
    accepted_everywhere(rec("page", url="https://x.io/" + "a" * (8192 - 13)))
    over = rec("page", url="https://x.io/" + "a" * (8193 - 13))
    assert reasons_everywhere(over) == {"string_too_long"}


@pytest.mark.parametrize(("char", "width"), [("é", 2), ("€", 3), ("😀", 4)])
def test_string_bytes_edge_multibyte(char: str, width: int) -> None:
    assert len(char.encode()) == width
    fits = char * (8192 // width)
    accepted_everywhere(rec("track", properties={"s": fits}))
    over = fits + char  # fewer characters than the limit, more bytes
    assert len(over) < 8192 < len(over.encode())
    assert reasons_everywhere(rec("track", properties={"s": over})) == {"string_too_long"}


def test_string_at_char_limit_but_one_byte_over() -> None:
    text = "x" * 8191 + "é"  # 8192 characters, 8193 bytes
    assert (len(text), len(text.encode())) == (8192, 8193)
    assert reasons_everywhere(rec("track", name="n", properties={"s": text})) == {"string_too_long"}


def test_string_limit_is_on_decoded_utf8_not_json_escapes() -> None:
    obj = rec("track", properties={"s": "é" * 4096})  # 8192 UTF-8 bytes, 24576 JSON bytes
    raw = json.dumps(obj).encode()
    assert b"\\u00e9" in raw
    assert decode(raw, L, NOW).properties["s"] == "é" * 4096


def test_map_key_bytes_edge() -> None:
    accepted_everywhere(rec("track", properties={"k" * 8192: 1}))
    assert reasons_everywhere(rec("track", properties={"k" * 8193: 1})) == {"string_too_long"}
    over = "é" * 4097
    assert reasons_everywhere(rec("track", properties={over: 1})) == {"string_too_long"}


def padded(size: int, form: str) -> bytes:
    """A valid track record whose encoded form is exactly `size` bytes."""

    def build(pad: int) -> bytes:
        props = {f"p{i}": "x" * 8000 for i in range(8)}
        props["pad"] = "x" * pad
        obj = rec("track", properties=props)
        return msgpack_of(obj) if form == "msgpack" else json_of(obj)

    base = len(build(1000))
    raw = build(1000 + size - base)
    assert len(raw) == size
    return raw


@pytest.mark.parametrize("form", ["msgpack", "json"])
def test_record_bytes_edge(form: str) -> None:
    assert decode(padded(64 * 1024, form), L, NOW).name == "Report Created"
    assert rejected(padded(64 * 1024 + 1, form)).reason == "record_too_large"


@pytest.mark.parametrize("field", ["timestamp", "issued_at"])
def test_future_edge(field: str) -> None:
    kind = "command" if field == "issued_at" else "track"
    accepted_everywhere(rec(kind, **{field: NOW + 24 * HOUR_MS}))
    accepted_everywhere(rec(kind, **{field: rfc3339(NOW + 24 * HOUR_MS, 330)}))
    assert reasons_everywhere(rec(kind, **{field: NOW + 24 * HOUR_MS + 1})) == {
        "timestamp_in_future"
    }
    late = rfc3339(NOW + 24 * HOUR_MS + 1, -420)
    assert reasons_everywhere(rec(kind, **{field: late})) == {"timestamp_in_future"}


@pytest.mark.parametrize("field", ["timestamp", "issued_at"])
def test_retention_edge(field: str) -> None:
    kind = "command" if field == "issued_at" else "feedback"
    accepted_everywhere(rec(kind, **{field: NOW - 400 * DAY_MS}))
    accepted_everywhere(rec(kind, **{field: rfc3339(NOW - 400 * DAY_MS, 0, z=True)}))
    early = rfc3339(NOW - 400 * DAY_MS - 1, 600)
    if kind == "command":  # the fold keeps commands forever: accepted whatever their age
        accepted_everywhere(rec(kind, **{field: NOW - 400 * DAY_MS - 1}))
        accepted_everywhere(rec(kind, **{field: early}))
        return
    assert reasons_everywhere(rec(kind, **{field: NOW - 400 * DAY_MS - 1})) == {"timestamp_too_old"}
    assert reasons_everywhere(rec(kind, **{field: early})) == {"timestamp_too_old"}


def test_custom_limits_are_respected() -> None:
    keys = Limits(max_keys=7)  # a track with properties has 7 top-level keys
    accepted_everywhere(rec("track", properties={f"k{i}": i for i in range(7)}), keys)
    over = rec("track", properties={f"k{i}": i for i in range(8)})
    assert reasons_everywhere(over, keys) == {"too_many_keys"}
    accepted_everywhere(over)  # the default allows 256

    strings = Limits(max_string_bytes=10)
    accepted_everywhere(rec("track", name="n", properties={"s": "é" * 5}), strings)
    accepted_everywhere(rec("track", name="n", properties={"s": "😀" * 2}), strings)
    for text in ("é" * 6, "😀" * 3, "x" * 11, "x" * 9 + "é"):
        obj = rec("track", name="n", properties={"s": text})
        assert reasons_everywhere(obj, strings) == {"string_too_long"}
        accepted_everywhere(obj)

    size = Limits(max_record_bytes=120)
    small = msgpack_of(rec("track", name="n"))
    assert len(small) <= 120
    assert decode(small, size, NOW).name == "n"
    raw = msgpack_of(rec("track", properties={"s": "x" * 200}))
    assert rejected(raw, size).reason == "record_too_large"
    assert rejected(raw[:121], size).reason == "record_too_large"
    assert decode(raw, L, NOW).properties["s"] == "x" * 200

    window = Limits(max_future_hours=1, retention_days=7)
    accepted_everywhere(rec("page", timestamp=NOW + HOUR_MS), window)
    assert reasons_everywhere(rec("page", timestamp=NOW + HOUR_MS + 1), window) == {
        "timestamp_in_future"
    }
    accepted_everywhere(rec("page", timestamp=NOW - 7 * DAY_MS), window)
    assert reasons_everywhere(rec("page", timestamp=NOW - 7 * DAY_MS - 1), window) == {
        "timestamp_too_old"
    }
    accepted_everywhere(rec("page", timestamp=NOW + 2 * HOUR_MS))  # the default allows 24 h
    accepted_everywhere(rec("page", timestamp=NOW - 8 * DAY_MS))  # and 400 days


def test_custom_max_keys_applies_to_the_top_level() -> None:
    obj = rec("page")  # 6 keys
    accepted_everywhere(obj, Limits(max_keys=6))
    assert reasons_everywhere(obj, Limits(max_keys=5)) == {"too_many_keys"}


# --------------------------------------------------------------------------- reasons


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\xc1", "invalid_msgpack"),  # a never-used msgpack byte
        (b"\x81\xa4type", "invalid_msgpack"),  # truncated map
        (msgpack_of({"a": 1}) + b"\xc0", "invalid_msgpack"),  # trailing data
        (b"hello world", "invalid_msgpack"),
        (b"\x00\x01\x02\xff\xfe", "invalid_msgpack"),
        (b'{"type": "track",', "invalid_json"),
        (b"{'type': 'track'}", "invalid_json"),
        (b'{"a": 1} x', "invalid_json"),
        (b"{", "invalid_json"),
        (b"\x81\xa4type\xa2\xc3\x28", "invalid_utf8"),  # bad UTF-8 in a msgpack str value
        (b"\x81\xa2\xff\xfe\xa1a", "invalid_utf8"),  # bad UTF-8 in a msgpack map key
        (b"\x81\xa1a\xa3\xed\xa0\x80", "invalid_utf8"),  # UTF-8-encoded surrogate
        (b'{"user_id": "\xc3\x28"}', "invalid_utf8"),
        (b'{"user_id": "\xff"}', "invalid_utf8"),
        (msgpack_of([1, 2]), "not_a_map"),
        (msgpack_of(5), "not_a_map"),
        (msgpack_of("track"), "not_a_map"),
        (msgpack_of(None), "not_a_map"),
        (msgpack_of(1.5), "not_a_map"),
        (b"", "empty_record"),
        (b'{"type": "track", "x": NaN}', "invalid_number"),
        (msgpack_of({"type": "track", "x": float("nan")}), "invalid_number"),
    ],
)
def test_bytes_reasons(raw: bytes, reason: str) -> None:
    error = rejected(raw)
    assert error.reason == reason
    assert isinstance(error.detail, str) and error.detail


@pytest.mark.parametrize(
    "kind",
    ["click", "", "Track", "company_delta", "dlq", "Alias", "merge", "unmerge", 5, None, True],
)
def test_unknown_type(kind: Any) -> None:
    obj = rec("track", type=kind)
    assert rejected_obj(obj).reason == "unknown_type"
    assert rejected(msgpack_of(obj)).reason == "unknown_type"


def test_missing_type() -> None:
    obj = rec("track")
    del obj["type"]
    assert reasons_everywhere(obj) == {"unknown_type"}


EVENT_REQUIRED = ["app_id", "user_id", "event_id", "timestamp"]
REQUIRED = {
    "identify": ["app_id", "user_id", "event_id", "timestamp"],
    "track": ["app_id", "user_id", "event_id", "timestamp", "name"],
    "page": ["app_id", "user_id", "event_id", "timestamp", "url"],
    "feedback": ["app_id", "user_id", "event_id", "timestamp", "survey_id", "survey_type"],
    "content": [*EVENT_REQUIRED, "content_id", "content_type", "action"],
    "alias": [*EVENT_REQUIRED, "previous_id"],
    "command": ["command", "command_id", "issued_at", "app_id", "user_id"],
}


@pytest.mark.parametrize(
    ("kind", "field"), [(k, f) for k, fields in REQUIRED.items() for f in fields]
)
def test_missing_required_field(kind: str, field: str) -> None:
    obj = rec(kind)
    del obj[field]
    for error in (rejected_obj(obj), rejected(msgpack_of(obj)), rejected(json_of(obj))):
        assert error.reason == "invalid_field"
        assert error.detail.startswith(f"{field}:"), error.detail


INVALID_FIELDS = [
    ("track", "name", 5),
    ("track", "name", ""),
    ("track", "name", "n" * 257),
    ("track", "name", None),
    ("track", "kind", "other"),
    ("track", "properties", ["a"]),
    ("track", "properties", "a=1"),
    ("page", "url", ""),
    ("page", "url", 7),
    ("feedback", "score", "5"),
    ("feedback", "score", 11),
    ("feedback", "score", -1),
    ("feedback", "score", 5.5),
    ("feedback", "score", 5.0),
    ("feedback", "score", True),
    ("feedback", "survey_type", "csat"),
    ("content", "step", -1),
    ("content", "step", "1"),
    ("content", "step", 1.5),
    ("content", "content_type", "modal"),
    ("content", "action", "hovered"),
    ("command", "command", "purge"),
    ("command", "command", "merge"),
    ("alias", "previous_id", ""),
    ("alias", "previous_id", "p" * 257),
    ("alias", "previous_id", "anon\n1"),
    ("alias", "previous_id", 7),
    ("alias", "previous_id", None),
    ("command", "issued_at", True),
    ("command", "issued_at", "2026-11-18T00:00:00"),
    ("track", "timestamp", True),
    ("track", "timestamp", False),
    ("track", "timestamp", 1.795e12),
    ("track", "timestamp", "1795000000000"),
    ("track", "timestamp", "2026-11-18T00:00:00"),  # no offset
    ("track", "timestamp", "2026-11-18T00:00:00.000"),  # no offset
    ("track", "timestamp", "2026-11-18"),
    ("track", "timestamp", "yesterday at noon, roughly"),
    ("track", "timestamp", "2026-13-18T00:00:00Z"),
    ("track", "timestamp", None),
    ("track", "app_id", "my app"),
    ("track", "app_id", "a/b"),
    ("track", "app_id", "a:b"),
    ("track", "app_id", "äpp"),
    ("track", "app_id", "app\n"),
    ("track", "app_id", ""),
    ("track", "app_id", "a" * 65),
    ("track", "app_id", 5),
    ("track", "user_id", "a\nb"),
    ("track", "user_id", "\x00"),
    ("track", "user_id", "tab\there"),
    ("track", "user_id", "del\x7f"),
    ("track", "user_id", "c1\x85"),
    ("track", "user_id", ""),
    ("track", "user_id", "u" * 257),
    ("track", "user_id", 42),
    ("track", "event_id", "e" * 129),
    ("track", "event_id", "e\r"),
    ("track", "event_id", ""),
    ("command", "command_id", "c" * 129),
    ("command", "user_id", "u\n"),
    ("track", "context", "web"),
    ("identify", "traits", {"nested": {"a": 1}}),
    ("identify", "traits", {"list": [1, 2]}),
    ("identify", "company", {"name": "no id"}),
]


@pytest.mark.parametrize(("kind", "field", "value"), INVALID_FIELDS)
def test_invalid_field_names_the_field(kind: str, field: str, value: Any) -> None:
    obj = rec(kind, **{field: value})
    for error in (rejected_obj(obj), rejected(msgpack_of(obj)), rejected(json_of(obj))):
        assert error.reason == "invalid_field", error
        assert error.detail.startswith(field), error.detail


@pytest.mark.parametrize(
    "value", ["u" * 256, "ü" * 256, "u:{x}*?", "名前", "🙂", " spaced ", "line\u2028sep"]
)
def test_valid_user_ids(value: str) -> None:
    assert accepted_everywhere(rec("track", user_id=value)).user_id == value


@pytest.mark.parametrize("value", ["a" * 64, "A.b_c-9", "0", "..."])
def test_valid_app_ids(value: str) -> None:
    assert accepted_everywhere(rec("page", app_id=value)).app_id == value


def test_event_id_edge() -> None:
    assert accepted_everywhere(rec("track", event_id="e" * 128)).event_id == "e" * 128
    assert accepted_everywhere(rec("command", command_id="c" * 128)).command_id == "c" * 128


def test_nps_without_score() -> None:
    obj = rec("feedback")
    del obj["score"]
    for error in (rejected_obj(obj), rejected(msgpack_of(obj)), rejected(json_of(obj))):
        assert error.reason == "invalid_field"
        assert "score" in error.detail
    assert rejected_obj(rec("feedback", score=None)).reason == "invalid_field"


@pytest.mark.parametrize("country", ["USA", "U1", "", "U", "ÜS", "1 ", 1])
def test_bad_context_country(country: Any) -> None:
    obj = rec("page", context={"country": country, "browser": "Firefox"})
    for error in (rejected_obj(obj), rejected(msgpack_of(obj))):
        assert error.reason == "invalid_field"
        assert error.detail.startswith("context.country"), error.detail


@pytest.mark.parametrize("country", ["USA", "U1", "", 5, True])
def test_bad_trait_country(country: Any) -> None:
    obj = rec("identify", traits={"country": country})
    assert rejected_obj(obj).reason == "invalid_field"
    assert rejected(msgpack_of(obj)).reason == "invalid_field"


@pytest.mark.parametrize("created_at", ["last tuesday", True, 1.5, "2026-11-18T00:00:00"])
def test_bad_trait_created_at(created_at: Any) -> None:
    obj = rec("identify", traits={"created_at": created_at})
    error = rejected_obj(obj)
    assert error.reason == "invalid_field"
    assert rejected(msgpack_of(obj)).reason == "invalid_field"


def test_bad_company_created_at() -> None:
    obj = rec("identify", company={"id": "acme", "created_at": True})
    error = rejected_obj(obj)
    assert error.reason == "invalid_field"
    assert error.detail.startswith("company.created_at"), error.detail


def test_deep_nesting() -> None:
    # record (1) -> company (2) -> traits (3) -> value (4) is as deep as a record goes
    accepted_everywhere(rec("identify", company={"id": "c", "traits": {"a": 1}}))
    for obj in (
        rec("track", properties={"a": {"b": {"c": 1}}}),
        rec("identify", company={"id": "c", "traits": {"a": {"b": 1}}}),
        rec("track", extra={"a": {"b": [1]}}),  # even in an ignored field
        rec("track", properties={"a": [[1]]}),
    ):
        assert reasons_everywhere(obj) == {"too_deep"}


@pytest.mark.parametrize("depth", [50, 3000])
def test_very_deep_nesting_is_rejected_not_raised(depth: int) -> None:
    nested: Any = 1
    for _ in range(depth):
        nested = {"a": nested}
    raw_json = b'{"a":' * depth + b"1" + b"}" * depth
    assert rejected(raw_json).reason in {"too_deep", "invalid_json"}
    raw_mp = b"\x81\xa1a" * depth + b"\x01"
    assert rejected(raw_mp).reason in {"too_deep", "invalid_msgpack"}
    if depth < 100:
        assert rejected(raw_json).reason == "too_deep"
        assert rejected(raw_mp).reason == "too_deep"
        assert rejected_obj(nested).reason == "too_deep"


def test_non_string_map_keys() -> None:
    for obj in (
        {**rec("track"), 1: "x"},
        rec("track", properties={1: "x"}),
        rec("identify", traits={2.5: "x"}),
        rec("identify", traits={None: "x"}),
        rec("identify", company={"id": "c", "traits": {(1, 2): "x"}}),
    ):
        assert rejected_obj(obj).reason == "invalid_key"
    # an empty msgpack bin key survives unpacking and is caught by the shape check
    assert rejected(msgpack_of({**rec("track"), b"": "x"})).reason == "invalid_key"


@pytest.mark.parametrize(
    "obj",
    [
        {**rec("track"), 1: "x"},
        rec("track", properties={1: "x"}),
        rec("identify", traits={-7: True}),
    ],
)
def test_non_string_map_keys_in_msgpack(obj: dict[Any, Any]) -> None:
    # Valid msgpack with a non-string key: the unpacker (strict_map_key) refuses it, so the
    # reason is currently invalid_msgpack rather than invalid_key; both say "not ours".
    assert rejected(msgpack_of(obj)).reason in {"invalid_key", "invalid_msgpack"}


def test_binary_values_are_rejected() -> None:
    assert rejected(msgpack_of(rec("track", properties={"b": b"\x00\x01"}))).reason in {
        "invalid_msgpack",
        "invalid_field",
    }


# --------------------------------------------------------------------------- known bugs


def test_json_lone_surrogate_in_long_string_is_rejected() -> None:
    """A JSON `\\ud800` escape gives a str that cannot be UTF-8 encoded; in a long string the
    shape check calls .encode() and UnicodeEncodeError escapes decode() (triage then reports
    `decoder_error`). It must be a Rejected (invalid_utf8 is what the msgpack path says)."""
    for obj in (
        rec("track", properties={"s": "\ud800" * 3000}),
        rec("track", ignored="x" * 2100 + "\udfff"),
        rec("track", properties={"k" * 2100 + "\ud800": 1}),
    ):
        raw = json.dumps(obj).encode()  # ASCII-only: the surrogate travels as an escape
        error = rejected(raw)
        assert error.reason in {"invalid_utf8", "invalid_field", "string_too_long"}


def test_json_lone_surrogate_in_a_short_string_or_key_is_rejected() -> None:
    """The shape check measures a short string without encoding it; a lone surrogate must
    still not get past the codec (a fold packing it would fail), a surrogate pair is fine."""
    for obj in (
        rec("track", name="a\ud800"),
        rec("identify", traits={"name": "\udfff"}),
        rec("track", properties={"\ud800": 1}),
    ):
        assert rejected(json.dumps(obj).encode()).reason == "invalid_utf8"
    fine = json.dumps(rec("track", name="smile \U0001f600")).encode()  # a pair as escapes
    assert decode(fine, L, NOW).name == "smile \U0001f600"


@pytest.mark.parametrize(
    ("kind", "over"),
    [
        ("identify", {"traits": {"big": 2**64}}),
        ("identify", {"traits": {"big": -(2**63) - 1}}),
        ("identify", {"company": {"id": "c", "traits": {"big": 10**30}}}),
        ("track", {"properties": {"big": 2**64}}),
        ("content", {"step": 2**64}),
    ],
)
def test_json_integer_beyond_msgpack_range_is_rejected(kind: str, over: dict) -> None:
    """JSON ints are unbounded, msgpack's are -2**63..2**64-1. decode() accepts such a JSON
    record, and the fold then fails to store it (msgpack OverflowError in UserState.to_bytes),
    so one bad record breaks its user's step instead of going to the DLQ."""
    obj = rec(kind, **over)
    raw = json.dumps(obj).encode()
    with pytest.raises(OverflowError):
        msgpack_of(obj)  # the value cannot travel or be stored as msgpack
    assert rejected(raw).reason in {"invalid_field", "invalid_number"}


# --------------------------------------------------------------------------- JSON Schema


def test_export_json_schemas(tmp_path) -> None:
    out = tmp_path / "schemas"
    paths = export_json_schemas(out)
    assert all(p.parent == out and p.exists() for p in paths)
    assert len(set(paths)) == len(paths)
    names = {p.name for p in paths}
    for kind in RECORD_TYPES:
        assert f"{kind}.schema.json" in names
    assert names == {p.name for p in out.iterdir()}
    for path in paths:
        schema = json.loads(path.read_text(encoding="utf-8"))
        assert isinstance(schema, dict)
        assert isinstance(schema["properties"], dict) and schema["properties"]
        assert schema["$schema"].startswith("https://json-schema.org/")
    for kind in RECORD_TYPES:
        schema = json.loads((out / f"{kind}.schema.json").read_text(encoding="utf-8"))
        props = schema["properties"]
        assert kind in json.dumps(props["type"])
        assert "type" in schema["required"]
        time_field = "issued_at" if kind == "command" else "timestamp"
        assert time_field in schema["required"]
        assert {"app_id", "user_id"} <= set(schema["required"])
        assert "integer" in json.dumps(props[time_field])
        assert "date-time" in json.dumps(props[time_field])
    alias = json.loads((out / "alias.schema.json").read_text(encoding="utf-8"))
    assert {"previous_id", "event_id", "timestamp"} <= set(alias["required"])
    assert alias["properties"]["previous_id"]["maxLength"] == 256
    command = json.loads((out / "command.schema.json").read_text(encoding="utf-8"))
    assert set(command["properties"]["command"]["enum"]) == set(COMMANDS)
    # exporting twice is idempotent
    again = export_json_schemas(out)
    assert [p.read_text() for p in again] == [p.read_text() for p in paths]
