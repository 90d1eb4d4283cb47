"""Event-time conversions: wire timestamps to UTC epoch ms, and ms back to RFC 3339 / days."""

from __future__ import annotations

from datetime import UTC, date, datetime

_EPOCH_DAY = date(1970, 1, 1).toordinal()


def parse_timestamp(value: object) -> int:
    """RFC 3339 with an offset, or integer epoch ms, to UTC epoch ms."""
    if isinstance(value, bool):
        raise ValueError("a timestamp is an RFC 3339 string or integer epoch milliseconds")
    if isinstance(value, int):
        if not -62_135_596_800_000 <= value <= 253_402_300_799_999:
            raise ValueError("epoch milliseconds out of range")
        return value
    if isinstance(value, str):
        text = value.strip()
        if len(text) < 20 or text[10] not in "Tt ":
            raise ValueError("not an RFC 3339 date-time")
        if text[-1] in "zZ":
            text = text[:-1] + "+00:00"
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError("not an RFC 3339 date-time") from None
        if parsed.tzinfo is None:
            raise ValueError("an RFC 3339 timestamp needs an offset (Z or +hh:mm)")
        delta = parsed - datetime(1970, 1, 1, tzinfo=UTC)
        return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000
    raise ValueError("a timestamp is an RFC 3339 string or integer epoch milliseconds")


def format_ms(ms: int) -> str:
    """UTC epoch ms as RFC 3339 with milliseconds and Z: 2026-11-28T14:30:22.123Z."""
    dt = datetime.fromtimestamp(ms // 1000, UTC)
    return f"{dt:%Y-%m-%dT%H:%M:%S}.{ms % 1000:03d}Z"


def day_of(ms: int) -> str:
    """The UTC day (YYYY-MM-DD) an instant falls on."""
    return date.fromordinal(_EPOCH_DAY + ms // 86_400_000).isoformat()


def parse_day(text: str) -> str:
    """Validate a YYYY-MM-DD day and return it normalised."""
    try:
        return date.fromisoformat(text).isoformat()
    except ValueError:
        raise ValueError(f"not a day (YYYY-MM-DD): {text!r}") from None
