"""The pure part of `profiles purge`: whose record is it, and is it erased."""

from __future__ import annotations

import json
from typing import Any

import msgpack

from replay.purge import H_END, H_PARTITION, H_TOPIC, _tags, erased_letter, erased_record, owner_of
from streams.topics import record_key

T = 1_790_000_000_000
DELETES = {("app", "gone"): T}
GONE = record_key("app", "gone")
KEPT = record_key("app", "kept")


def pack(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def track(user: str, at: Any, **extra: Any) -> dict[str, Any]:
    return {
        "type": "track",
        "app_id": "app",
        "user_id": user,
        "event_id": f"e-{at}",
        "timestamp": at,
        "name": "Clicked",
        **extra,
    }


def command(user: str, kind: str, at: int) -> dict[str, Any]:
    return {
        "type": "command",
        "command": kind,
        "command_id": f"c-{kind}-{at}",
        "issued_at": at,
        "app_id": "app",
        "user_id": user,
    }


def letter(key: bytes | None, value: bytes, topic: str = "p.track") -> bytes:
    return pack(
        {
            "reason": "invalid_field",
            "detail": "d",
            "topic": topic,
            "partition": 0,
            "offset": 1,
            "key": key,
            "value": value,
            "failed_at": 1,
        }
    )


def test_owner_reads_msgpack_json_and_rfc3339() -> None:
    assert owner_of(pack(track("gone", T))) is not None
    found = owner_of(json.dumps(track("gone", "2026-09-21T14:13:20.000+02:00")).encode())
    assert found is not None and found.user == ("app", "gone")
    assert found.at == 1_789_992_800_000  # 12:13:20Z
    assert owner_of(b"\xc1garbage") is None
    assert owner_of(pack([1, 2])) is None
    assert owner_of(None) is None


def test_erased_is_the_users_records_up_to_t_except_its_deletes() -> None:
    assert erased_record(pack(track("gone", T)), GONE, DELETES) == ("app", "gone")
    assert erased_record(pack(track("gone", T - 1)), KEPT, DELETES) == ("app", "gone")  # payload
    assert erased_record(pack(track("gone", T + 1)), GONE, DELETES) is None
    assert erased_record(pack(track("kept", T - 1)), GONE, DELETES) is None  # payload decides
    assert erased_record(pack(command("gone", "delete", T)), GONE, DELETES) is None
    assert erased_record(pack(command("gone", "delete", T - 5)), GONE, DELETES) is None
    assert erased_record(pack(command("gone", "exclude", T - 5)), GONE, DELETES) is not None
    # rejected by the schema, old, or oversized: still the user's data
    assert erased_record(pack(track("gone", T - 1, name=123)), GONE, DELETES) is not None
    assert erased_record(pack(track("gone", 5)), GONE, DELETES) is not None
    big = pack(track("gone", T - 1, properties={"x": "y" * 70_000}))
    assert erased_record(big, GONE, DELETES) is not None
    # names nobody: goes with the purged user's key, else stays
    assert erased_record(b"\xc1garbage", GONE, DELETES) == ("app", "gone")
    assert erased_record(b"\xc1garbage", KEPT, DELETES) is None
    assert erased_record(b"\xc1garbage", None, DELETES) is None


def test_a_letter_goes_exactly_when_the_record_it_carries_goes() -> None:
    assert erased_letter(letter(GONE, pack(track("gone", T - 1, name=1))), DELETES) is not None
    assert erased_letter(letter(GONE, b"\xc1garbage"), DELETES) is not None
    assert erased_letter(letter(None, pack(track("gone", T - 1, name=1))), DELETES) is not None
    assert erased_letter(letter(GONE, pack(track("gone", T + 1, name=1))), DELETES) is None
    assert erased_letter(letter(KEPT, b"\xc1garbage"), DELETES) is None
    assert erased_letter(b"not a letter", DELETES) is None
    delta = {"type": "company_delta", "app_id": "app", "parts": [{"user_id": "gone"}]}
    assert erased_letter(letter(b"app:c-1", pack(delta)), DELETES) == ("app", "gone")
    both = {**delta, "parts": [{"user_id": "kept"}, {"user_id": "gone"}]}
    assert erased_letter(letter(b"app:c-1", pack(both)), DELETES) == ("app", "gone")
    other = {**delta, "parts": [{"user_id": "kept"}]}
    assert erased_letter(letter(b"app:c-1", pack(other)), DELETES) is None


def test_staging_tags_come_off() -> None:
    original = [("trace", b"1")]
    tags = [(H_TOPIC, b"p.track"), (H_PARTITION, b"3"), (H_END, b"42")]
    assert _tags([*original, *tags]) == (
        original,
        {H_TOPIC: "p.track", H_PARTITION: "3", H_END: "42"},
    )
    assert _tags(original) == (original, {})
