"""The one wire codec: msgpack maps by default, JSON objects accepted by their first byte."""

from __future__ import annotations

import json
import math
from typing import Any

import msgpack
from pydantic import ValidationError

from schemas.limits import Limits
from schemas.models import RECORD_ADAPTER, Command, Record


class Rejected(Exception):
    """A record that cannot be accepted; `reason` is machine-readable, `detail` human."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def encode(obj: dict[str, Any]) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def decode_bytes(raw: bytes, limits: Limits) -> dict[str, Any]:
    """Bytes to a plain map, or Rejected. No schema yet."""
    if len(raw) > limits.max_record_bytes:
        raise Rejected("record_too_large", f"{len(raw)} bytes > {limits.max_record_bytes}")
    if not raw:
        raise Rejected("empty_record", "the record value is empty")
    if raw[:1] == b"{":
        try:
            obj = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise Rejected("invalid_utf8", str(exc)) from None
        except (ValueError, RecursionError) as exc:
            raise Rejected("invalid_json", str(exc)[:200]) from None
    else:
        try:
            obj = msgpack.unpackb(
                raw, raw=False, strict_map_key=True, use_list=True, max_bin_len=0, max_ext_len=0
            )
        except UnicodeDecodeError as exc:
            raise Rejected("invalid_utf8", str(exc)[:200]) from None
        except (
            ValueError,
            TypeError,
            msgpack.ExtraData,
            msgpack.FormatError,
            RecursionError,
        ) as exc:
            raise Rejected("invalid_msgpack", str(exc)[:200] or type(exc).__name__) from None
        except Exception as exc:  # msgpack raises a few undocumented kinds on garbage
            raise Rejected("invalid_msgpack", f"{type(exc).__name__}: {exc}"[:200]) from None
    if not isinstance(obj, dict):
        raise Rejected("not_a_map", f"the record is a {type(obj).__name__}, not a map")
    check_shape(obj, limits)
    return obj


def check_shape(obj: Any, limits: Limits, depth: int = 1, path: str = "") -> None:
    """Limits on nesting, map sizes and string lengths, before the schema looks at it."""
    if depth > limits.max_depth:
        raise Rejected("too_deep", f"nesting deeper than {limits.max_depth} at {path or '/'}")
    if isinstance(obj, dict):
        if len(obj) > limits.max_keys:
            raise Rejected("too_many_keys", f"{len(obj)} keys > {limits.max_keys} at {path or '/'}")
        for key, value in obj.items():
            if not isinstance(key, str):
                raise Rejected("invalid_key", f"non-string key at {path or '/'}")
            if _utf8_len(key, path) > limits.max_string_bytes:
                raise Rejected("string_too_long", f"key at {path or '/'}")
            check_shape(value, limits, depth + 1, f"{path}/{key}")
    elif isinstance(obj, list):
        if len(obj) > limits.max_keys:
            raise Rejected("too_many_keys", f"{len(obj)} items > {limits.max_keys} at {path}")
        for i, value in enumerate(obj):
            check_shape(value, limits, depth + 1, f"{path}/{i}")
    elif isinstance(obj, str):
        size = _utf8_len(obj, path)
        if size > limits.max_string_bytes:
            raise Rejected("string_too_long", f"{size} bytes > {limits.max_string_bytes} at {path}")
    elif isinstance(obj, float) and not math.isfinite(obj):
        raise Rejected("invalid_number", f"{obj} at {path}")
    elif isinstance(obj, int) and not isinstance(obj, bool) and not _INT_MIN <= obj <= _INT_MAX:
        raise Rejected("invalid_number", f"integer out of the 64-bit range at {path}")


_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1  # what msgpack can carry


def _utf8_len(text: str, path: str) -> int:
    try:
        return len(text.encode("utf-8"))
    except UnicodeEncodeError:  # a lone surrogate from a JSON \ud800 escape
        raise Rejected("invalid_utf8", f"a lone surrogate at {path or '/'}") from None


def validate(
    obj: dict[str, Any], limits: Limits, now_ms: int, *, shape_checked: bool = False
) -> Record:
    """A decoded map to a typed record, or Rejected (schema, then the time window).

    Events older than the retention are rejected (`timestamp_too_old`); commands never are for
    their age, because the fold keeps them forever (a delete keeps later records erased, an
    exclude from long ago still holds), so a replayed or redelivered old command must be
    accepted like the first time. Both may be at most `max_future_hours` ahead."""
    if not shape_checked:  # decode_bytes checked it already
        check_shape(obj, limits)
    kind = obj.get("type")
    if kind not in ("identify", "track", "page", "feedback", "content", "command"):
        raise Rejected("unknown_type", f"type {kind!r} is not a known record type")
    try:
        record = RECORD_ADAPTER.validate_python(obj)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"][1:]) or "record"
        raise Rejected("invalid_field", f"{where}: {first['msg']}"[:300]) from None
    at = record.issued_at if isinstance(record, Command) else record.timestamp
    if at > limits.newest_ms(now_ms):
        raise Rejected(
            "timestamp_in_future",
            f"{at} is more than {limits.max_future_hours} h ahead of {now_ms}",
        )
    if not isinstance(record, Command) and at < limits.oldest_ms(now_ms):
        raise Rejected(
            "timestamp_too_old", f"{at} is older than the retention of {limits.retention_days} days"
        )
    return record


def decode(raw: bytes, limits: Limits, now_ms: int) -> Record:
    """Bytes to a typed record, or Rejected with a machine-readable reason."""
    return validate(decode_bytes(raw, limits), limits, now_ms, shape_checked=True)
