"""Segment definitions on `profiles.segments`: read a file, publish, decode, and follow progress."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from aiokafka import AIOKafkaProducer

from projections import keys
from projections.fold import decode_field
from schemas.codec import Rejected
from schemas.segments import Segment, decode_segment, encode_segment, parse_segment
from streams.kafka import client_options, ensure_topics
from streams.settings import Settings
from streams.topics import Topics


def read_file(path: Path) -> Segment:
    """A definition from a .json, .yaml or .yml file; ValueError with one line otherwise."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read {path}: {exc}") from None
    try:
        data = yaml.safe_load(text) if path.suffix in (".yaml", ".yml") else json.loads(text)
    except (ValueError, yaml.YAMLError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ValueError(
            f"{path} is not valid {path.suffix.lstrip('.') or 'JSON'}: {first}"
        ) from None
    return parse_segment(data)


def decode_definition(key: bytes | None, value: bytes | None) -> tuple[str, Segment | None]:
    """A `profiles.segments` record to (segment id, definition or None for a removal)."""
    if not key:
        raise Rejected("invalid_segment", "a definition record needs the segment id as its key")
    try:
        segment_id = key.decode()
    except UnicodeDecodeError:
        raise Rejected("invalid_segment", "the key is not UTF-8") from None
    if value is None:
        return segment_id, None
    try:
        segment = decode_segment(value)
    except ValueError as exc:
        raise Rejected("invalid_segment", str(exc)) from None
    if segment.id != segment_id:
        raise Rejected("invalid_segment", f"key {segment_id!r} differs from id {segment.id!r}")
    return segment_id, segment


async def publish(settings: Settings, segment_id: str, segment: Segment | None) -> int:
    """Send a definition (None: a removal) and return its offset once the broker has it."""
    await ensure_topics(settings)
    producer = AIOKafkaProducer(**client_options(settings), acks="all", enable_idempotence=True)
    await producer.start()
    try:
        value = None if segment is None else encode_segment(segment)
        meta = await producer.send_and_wait(
            Topics(settings.topic_prefix).segments, key=segment_id.encode(), value=value
        )
        return int(meta.offset)
    finally:
        await producer.stop()


def progress(client: Any, namespace: str, segment_id: str) -> dict[str, Any] | None:
    raw = client.hget(keys.segment_progress(namespace), segment_id)
    return None if raw is None else decode_field(raw)


def wait_applied(
    client: Any,
    namespace: Callable[[], str],
    segment_id: str,
    offset: int,
    timeout: float,
    report: Callable[[int, int | None], None],
) -> bool:
    """Until a worker has applied the record at `offset` and evaluated every profile; False
    on timeout. `report(done, total)` is called as the evaluation goes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        note = progress(client, namespace(), segment_id)
        if note is not None and note["offset"] >= offset:
            report(note["done"], note["total"])
            if note["offset"] > offset or note["ready"]:
                return True
        time.sleep(0.2)
    return False
