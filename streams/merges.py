"""The merge protocol on the wire (docs/design.md §7): what user steps and the link graph
step send (projections/origins.py `Mail`, `Note`), and their decoding on the way in.

Workers write these topics, not SDKs: a message's schema is checked, and a record it carries
is validated again without the time window (it was accepted once already; its age is for the
fold to judge). Each message names the namespace its sender wrote, and a worker takes only
those of the namespace it writes now (a replay's flip retires the others)."""

from __future__ import annotations

import asyncio
from typing import Any

import msgpack
from pydantic import ValidationError

from projections.identity import Link
from projections.identity_step import GraphItem
from projections.origins import Mail, Note
from projections.step import Positioned
from schemas.codec import Rejected, encode
from schemas.models import RECORD_ADAPTER, Alias, Command, Record
from streams.kafka import MAX_DELTA_BYTES
from streams.topics import record_key

ADDED_PER_MESSAGE = 500  # records of one `add` per message: far below the size limit


def _record(obj: Any) -> Record:
    return RECORD_ADAPTER.validate_python(obj)


def mail_messages(mails: list[Mail], namespace: str) -> list[tuple[str, bytes, bytes]]:
    """(topic kind "identity" | "merges", key, value) of each message the mails make."""
    out = []
    for m in mails:
        base: dict[str, Any] = {"kind": m.kind, "namespace": namespace, "app_id": m.app_id}
        if m.to is None:  # for the app's link graph, keyed by app
            (record,) = m.records
            value = {**base, "user_id": m.origin, "record": record.model_dump()}
            out.append(("identity", m.app_id.encode(), encode(value)))
            continue
        key = record_key(m.app_id, m.to)
        value = {**base, "user_id": m.to, "origin": m.origin, "g": m.g}
        if m.kind != "add":
            out.append(("merges", key, encode(value)))
            continue
        for i in range(0, len(m.records), ADDED_PER_MESSAGE):
            chunk = m.records[i : i + ADDED_PER_MESSAGE]
            records = [r.model_dump() for r in chunk]
            out.append(("merges", key, encode({**value, "records": records})))
    return out


def note_messages(notes: list[Note], namespace: str) -> list[tuple[str, bytes, bytes]]:
    out = []
    for n in notes:
        value: dict[str, Any] = {
            "kind": n.kind,
            "namespace": namespace,
            "app_id": n.app_id,
            "user_id": n.user_id,
            "origin": n.other,
            "g": n.g,
        }
        if n.record is not None:
            value["record"] = n.record.model_dump()
        out.append(("merges", record_key(n.app_id, n.user_id), encode(value)))
    return out


def _unpack(raw: bytes) -> dict[str, Any]:
    if len(raw) > MAX_DELTA_BYTES:
        raise Rejected("record_too_large", f"{len(raw)} bytes > {MAX_DELTA_BYTES}")
    try:
        obj = msgpack.unpackb(raw, raw=False, strict_map_key=True, max_bin_len=0, max_ext_len=0)
    except Exception as exc:
        raise Rejected("invalid_msgpack", f"{type(exc).__name__}: {exc}"[:200]) from None
    if not isinstance(obj, dict):
        raise Rejected("not_a_map", type(obj).__name__)
    return obj


def _fields(obj: dict[str, Any], *names: str) -> list[Any]:
    try:
        return [obj[n] for n in names]
    except KeyError as exc:
        raise Rejected("invalid_field", f"{exc.args[0]}: missing") from None


def decode_merge(
    raw: bytes, topic: str, partition: int, offset: int
) -> tuple[str, list[Positioned]]:
    """A message of the merges topic: its namespace and what it gives the id's step."""
    obj = _unpack(raw)
    kind, namespace, app_id, user_id, origin, g = _fields(
        obj, "kind", "namespace", "app_id", "user_id", "origin", "g"
    )
    try:
        if kind == "add":
            records = [_record({**r, "user_id": user_id}) for r in obj["records"]]
            items = [Positioned(r, topic, partition, offset, origin, g) for r in records]
        elif kind in ("root", "join", "drop", "erase"):
            record = _record(obj["record"]) if kind == "erase" else None
            if record is not None and not isinstance(record, Command):
                raise Rejected("invalid_field", "record: an erase carries a delete command")
            note = Note(kind, app_id, user_id, origin, int(g), record)
            items = [Positioned(note, topic, partition, offset)]
        else:
            raise Rejected("invalid_field", f"kind: {kind!r} is no merge message")
    except ValidationError as exc:
        raise Rejected("invalid_field", str(exc.errors()[0]["msg"])[:200]) from None
    except (KeyError, TypeError, ValueError) as exc:
        raise Rejected("invalid_field", f"{type(exc).__name__}: {exc}"[:200]) from None
    return namespace, items


def decode_graph(raw: bytes) -> tuple[str, GraphItem]:
    """A message of the identity topic: its namespace and the graph item."""
    obj = _unpack(raw)
    kind, namespace, app_id, user_id, record = _fields(
        obj, "kind", "namespace", "app_id", "user_id", "record"
    )
    try:
        r = _record(record)
    except ValidationError as exc:
        raise Rejected("invalid_field", str(exc.errors()[0]["msg"])[:200]) from None
    if kind == "link" and isinstance(r, Alias):
        link = Link(r.previous_id, r.timestamp, r.event_id, r.user_id)
    elif kind == "link" and isinstance(r, Command) and r.command == "unmerge":
        link = Link(r.user_id, r.issued_at, r.command_id, None)
    elif kind == "delete" and isinstance(r, Command) and r.command == "delete":
        return namespace, GraphItem(app_id, user_id, delete=r)
    else:
        raise Rejected("invalid_field", f"kind: {kind!r} with a {r.type} record")
    return namespace, GraphItem(app_id, user_id, link=link)


class KafkaMailer:
    """Sends a step's merge messages (or the link graph's notes) and waits until the broker
    has them, before the batch is acked."""

    def __init__(self, topics: dict[str, Any], namespace: str) -> None:
        self._topics = topics  # "identity" | "merges" -> a Faust topic
        self._namespace = namespace

    async def _send(self, messages: list[tuple[str, bytes, bytes]]) -> None:
        futures = await asyncio.gather(
            *(self._topics[t].send(key=key, value=value) for t, key, value in messages)
        )
        await asyncio.gather(*futures)

    async def send(self, mails: list[Mail]) -> None:
        await self._send(mail_messages(mails, self._namespace))

    async def send_notes(self, notes: list[Note]) -> None:
        await self._send(note_messages(notes, self._namespace))
