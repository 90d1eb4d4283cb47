"""The one wire codec: msgpack maps by default, JSON objects accepted by their first byte."""

from __future__ import annotations

import json
import math
import re
from typing import Any

import msgpack
from pydantic import ValidationError

from schemas.limits import Limits
from schemas.models import RECORD_ADAPTER, RECORD_TYPES, Alias, Command, Record


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
        # Only a JSON \\uD800-\\uDFFF escape can bring a lone surrogate, which no UTF-8 can
        # carry on (msgpack's decoder refuses one): look for one only then.
        if _SURROGATE_ESCAPE.search(raw) and isinstance(obj, dict):
            _no_lone_surrogate(obj)
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


def check_shape(obj: Any, limits: Limits) -> None:
    """Limits on nesting, map sizes and string lengths, before the schema looks at it.

    The walk keeps no path: records are almost always fine, so the path of a violation is
    found by walking again (`_where`) only when there is one."""
    why = _shape(obj, limits, 1)
    if why is not None:
        reason, detail = why
        path = _where(obj, limits, 1, "")
        raise Rejected(reason, detail.format(path=path or "/"))


def _shape(obj: Any, limits: Limits, depth: int) -> tuple[str, str] | None:
    """The first violation as (reason, detail with a {path} to fill), or None."""
    if depth > limits.max_depth:
        return "too_deep", f"nesting deeper than {limits.max_depth} at {{path}}"
    kind = type(obj)
    if kind is dict:
        if len(obj) > limits.max_keys:
            return "too_many_keys", f"{len(obj)} keys > {limits.max_keys} at {{path}}"
        for key, value in obj.items():
            if type(key) is not str:
                return "invalid_key", "non-string key at {path}"
            if len(key) * 4 > limits.max_string_bytes and _too_long(key, limits):
                return _too_long(key, limits) or None
            found = _value(value, limits, depth)
            if found is not None:
                return found
        return None
    if kind is list:
        if len(obj) > limits.max_keys:
            return "too_many_keys", f"{len(obj)} items > {limits.max_keys} at {{path}}"
        for value in obj:
            found = _value(value, limits, depth)
            if found is not None:
                return found
        return None
    return None


def _value(value: Any, limits: Limits, depth: int) -> tuple[str, str] | None:
    """A value inside a map or list at `depth`: scalars checked here, containers walked."""
    if depth >= limits.max_depth:  # the value itself sits one deeper
        return "too_deep", f"nesting deeper than {limits.max_depth} at {{path}}"
    kind = type(value)
    if kind is str:
        # at most 4 bytes a character: most strings need no encoding to be measured
        return _too_long(value, limits) if len(value) * 4 > limits.max_string_bytes else None
    if kind is int:
        if not _INT_MIN <= value <= _INT_MAX:
            return "invalid_number", "integer out of the 64-bit range at {path}"
        return None
    if kind is float:
        return None if math.isfinite(value) else ("invalid_number", f"{value} at {{path}}")
    if kind is dict or kind is list:
        return _shape(value, limits, depth + 1)
    return None


def _too_long(text: str, limits: Limits) -> tuple[str, str] | None:
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:  # a lone surrogate from a JSON \\ud800 escape
        return "invalid_utf8", "a lone surrogate at {path}"
    if size > limits.max_string_bytes:
        return "string_too_long", f"{size} bytes > {limits.max_string_bytes} at {{path}}"
    return None


def _where(obj: Any, limits: Limits, depth: int, path: str) -> str:
    """The path of the first violation `_shape` finds in `obj` (at `depth`)."""
    kind = type(obj)
    if depth > limits.max_depth:
        return path
    if kind is dict and len(obj) <= limits.max_keys:
        for key, value in obj.items():
            if type(key) is not str or _too_long(key, limits):
                return path
            if _value(value, limits, depth) is not None:
                if depth < limits.max_depth and type(value) in (dict, list):
                    return _where(value, limits, depth + 1, f"{path}/{key}")
                return f"{path}/{key}"
    elif kind is list and len(obj) <= limits.max_keys:
        for i, value in enumerate(obj):
            if _value(value, limits, depth) is not None:
                if depth < limits.max_depth and type(value) in (dict, list):
                    return _where(value, limits, depth + 1, f"{path}/{i}")
                return f"{path}/{i}"
    return path


_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1  # what msgpack can carry
_SURROGATE_ESCAPE = re.compile(rb"\\[uU][dD][89a-fA-F]")


def _no_lone_surrogate(obj: Any, path: str = "") -> None:
    """Rejected `invalid_utf8` when a string (or key) holds a lone surrogate."""
    if isinstance(obj, str):
        try:
            obj.encode("utf-8")
        except UnicodeEncodeError:
            raise Rejected("invalid_utf8", f"a lone surrogate at {path or '/'}") from None
    elif isinstance(obj, dict):
        for key, value in obj.items():
            _no_lone_surrogate(key, path)
            _no_lone_surrogate(value, f"{path}/{key}")
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            _no_lone_surrogate(value, f"{path}/{i}")


def validate(
    obj: dict[str, Any], limits: Limits, now_ms: int, *, shape_checked: bool = False
) -> Record:
    """A decoded map to a typed record, or Rejected (schema, then the time window).

    Events older than the retention are rejected (`timestamp_too_old`); commands and aliases
    never are for their age. The fold keeps commands forever (a delete keeps later records
    erased, an exclude from long ago still holds), and an alias is a link, not data: it joins
    whatever records of its two ids survive, however long ago it was sent (docs/design.md
    §7). So a replayed or redelivered old one must be accepted like the first time. Every
    record may be at most `max_future_hours` ahead."""
    if not shape_checked:  # decode_bytes checked it already
        check_shape(obj, limits)
    kind = obj.get("type")
    if kind not in RECORD_TYPES:
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
    if not isinstance(record, Command | Alias) and at < limits.oldest_ms(now_ms):
        raise Rejected(
            "timestamp_too_old", f"{at} is older than the retention of {limits.retention_days} days"
        )
    return record


def decode(raw: bytes, limits: Limits, now_ms: int) -> Record:
    """Bytes to a typed record, or Rejected with a machine-readable reason."""
    return validate(decode_bytes(raw, limits), limits, now_ms, shape_checked=True)
