"""The pure parts of the DLQ tools: letters, previews, the summary and the redrive plan."""

from __future__ import annotations

import base64

import msgpack

from replay.dlq import (
    UNREADABLE,
    Letter,
    Marker,
    decode_marker,
    encode_marker,
    letter_view,
    parse_letter,
    plan_redrive,
    preview,
    redriven_coordinates,
    summarize,
)
from schemas.timefmt import format_ms

SOURCES = ["p.track", "p.page"]


def letter(offset: int, reason: str = "r", topic: str = "p.track", failed_at: int = 1000) -> Letter:
    return Letter(0, offset, reason, "d", topic, 1, 100 + offset, b"a:u", b"\x00v", failed_at)


def test_parse_letter_round_trip_and_unreadable() -> None:
    raw = msgpack.packb(
        {
            "reason": "invalid_field",
            "detail": "x",
            "topic": "p.track",
            "partition": 2,
            "offset": 9,
            "key": None,
            "value": b"\xff",
            "failed_at": 5,
        },
        use_bin_type=True,
    )
    got = parse_letter(3, 4, raw)
    assert (got.coordinates, got.source, got.key, got.value) == (
        "3:4",
        ("p.track", 2, 9),
        None,
        b"\xff",
    )
    bad = parse_letter(0, 1, b"\xc1")
    assert bad.reason == UNREADABLE and bad.value == b"\xc1"


def test_preview_is_ascii_and_bounded() -> None:
    assert preview(b"ab\x00'\n") == "ab\\x00'\\n"
    long = preview(b"x" * 250)
    assert long.startswith("x" * 200) and long.endswith("(+50 bytes)")
    assert preview("é".encode()).isascii()


def test_summary_and_views() -> None:
    letters = [
        letter(1, "a", failed_at=3000),
        letter(2, "a", "p.page", 1000),
        letter(3, "b", failed_at=2000),
    ]
    s = summarize(letters, {"0:1"})
    assert s["total"] == 3
    assert list(s["reasons"]) == ["a", "b"]
    assert s["reasons"]["a"] == {
        "count": 2,
        "redriven": 1,
        "topics": {"p.page": 1, "p.track": 1},
        "first_failed_at": format_ms(1000),
        "last_failed_at": format_ms(3000),
    }
    v = letter_view(letters[0], True, as_json=True)
    assert base64.b64decode(v["value"]) == b"\x00v" and v["key"] == "a:u" and v["redriven"]
    assert letter_view(letters[0], False, as_json=False)["value_preview"] == "\\x00v"
    assert summarize([]) == {"total": 0, "reasons": {}}


def test_plan_sorts_letters_by_the_log() -> None:
    letters = [letter(i) for i in range(5)] + [letter(5, topic="p.company-deltas")]
    letters.append(letter(6, reason="other"))
    markers = {
        "0:0": Marker("0:0", letters[0].source, "done", 0),
        "0:1": Marker("0:1", letters[1].source, "sending", 7),
        "0:2": Marker("0:2", ("p.track", 1, 999), "done", 0),  # an older letter at 0:2
    }
    plan = plan_redrive(letters, markers, SOURCES, "r")
    assert plan.already == {"r": 1}
    assert [x.dlq_offset for x, _ in plan.unsure] == [1]
    assert [x.dlq_offset for x in plan.send] == [2, 3, 4]
    assert plan.refused == {"p.company-deltas": 1}
    assert redriven_coordinates(letters, markers) == {"0:0"}
    assert len(plan_redrive(letters, markers, SOURCES, None).send) == 4


def test_marker_round_trip() -> None:
    m = decode_marker(encode_marker(letter(3), "sending", 42, 1))
    assert m == Marker("0:3", ("p.track", 1, 103), "sending", 42)
    assert decode_marker(b"junk") is None
