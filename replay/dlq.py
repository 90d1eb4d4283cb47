"""Dead-letter tools: read the DLQ, summarize it by reason, and redrive letters after a fix.

Redrive sends a letter's *original* value bytes and key back to its original source topic and
partition, so the record is the same record (event time, event_id, everything); the worker's
fences and event_id dedupe make a redrive of an already-accepted record harmless.

Each letter is redriven at most once, resumably, with any `--reason` filter. The redrive log
`<prefix>dlq-redriven` (one partition, compacted, keyed by the letter's DLQ partition:offset)
holds a marker per letter, written in three steps per batch:

1. `sending` markers, each with the end offset of the target partition sampled just before;
2. the records (idempotent producer, acks=all), each with the header `profiles-redrive-of:
   <dlq topic>:<partition>:<offset>`; all delivered before step 3;
3. `done` markers.

A `done` letter is never sent again. A `sending` letter (a redrive stopped between 1 and 3) is
resolved by reading its target partition from the recorded offset: if a record with its header
is there it was delivered and is marked `done`, else it is sent now. Letters not selected by
`--reason` get no marker, so a later redrive of another reason still sees them.

The log is written by a transactional producer (id `<group_id>-dlq-redrive`) and read with
read_committed: starting a redrive fences every earlier one of the pipeline, which fails at its
next marker write instead of racing on. (Records are not sent in that transaction on purpose:
commit markers in the source topics would leave the worker's committed offset one short of the
end, so `profiles wait` would never see lag 0.)
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgpack
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from schemas.models import DeadLetter
from schemas.timefmt import format_ms
from streams.kafka import client_options
from streams.settings import Settings
from streams.topics import Topics

PREVIEW_BYTES = 200
BATCH = 500  # letters per redrive step
UNREADABLE = "unreadable_letter"  # a DLQ record that is not a DeadLetter (never redriven)
HEADER = "profiles-redrive-of"  # on every redriven record: the DLQ letter it came from


class ReadTimeout(KafkaError):
    """A topic could not be read to its end offsets in time."""


@dataclass(frozen=True)
class Letter:
    """One DLQ record and where it sits in the DLQ."""

    dlq_partition: int
    dlq_offset: int
    reason: str
    detail: str
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    failed_at: int

    @property
    def coordinates(self) -> str:
        return f"{self.dlq_partition}:{self.dlq_offset}"

    @property
    def source(self) -> tuple[str, int, int]:
        return (self.topic, self.partition, self.offset)


def parse_letter(dlq_partition: int, dlq_offset: int, raw: bytes | None) -> Letter:
    """A DLQ record value as a Letter; an unreadable one keeps its bytes under UNREADABLE."""
    try:
        obj = msgpack.unpackb(raw or b"", raw=False)
        letter = DeadLetter.model_validate(obj)
    except Exception as exc:  # msgpack raises a few undocumented kinds on garbage
        detail = f"not a dead letter ({type(exc).__name__})"
        return Letter(
            dlq_partition, dlq_offset, UNREADABLE, detail, "", -1, -1, None, raw or b"", 0
        )
    return Letter(
        dlq_partition,
        dlq_offset,
        letter.reason,
        letter.detail,
        letter.topic,
        letter.partition,
        letter.offset,
        letter.key,
        letter.value,
        letter.failed_at,
    )


# ---- pure views --------------------------------------------------------------------------------


def preview(value: bytes, size: int = PREVIEW_BYTES) -> str:
    """The first `size` bytes as a printable, ASCII-only Python bytes literal body."""
    text = repr(value[:size])[2:-1]
    return text + (f"... (+{len(value) - size} bytes)" if len(value) > size else "")


def summarize(letters: Iterable[Letter], redriven: set[str] | None = None) -> dict[str, Any]:
    """`dlq list --json`: counts by reason with source topics and the failed_at range."""
    done = redriven or set()
    reasons: dict[str, dict[str, Any]] = {}
    total = 0
    for letter in letters:
        total += 1
        row = reasons.setdefault(
            letter.reason,
            {"count": 0, "redriven": 0, "topics": Counter(), "first": None, "last": None},
        )
        row["count"] += 1
        row["redriven"] += letter.coordinates in done
        row["topics"][letter.topic] += 1
        row["first"] = (
            letter.failed_at if row["first"] is None else min(row["first"], letter.failed_at)
        )
        row["last"] = (
            letter.failed_at if row["last"] is None else max(row["last"], letter.failed_at)
        )
    return {
        "total": total,
        "reasons": {
            reason: {
                "count": row["count"],
                "redriven": row["redriven"],
                "topics": dict(sorted(row["topics"].items())),
                "first_failed_at": format_ms(row["first"]),
                "last_failed_at": format_ms(row["last"]),
            }
            for reason, row in sorted(reasons.items(), key=lambda kv: (-kv[1]["count"], kv[0]))
        },
    }


def letter_view(letter: Letter, redriven: bool, as_json: bool) -> dict[str, Any]:
    """`dlq show`: one letter; JSON carries the whole value as base64, text a preview."""
    view: dict[str, Any] = {
        "dlq_partition": letter.dlq_partition,
        "dlq_offset": letter.dlq_offset,
        "reason": letter.reason,
        "detail": letter.detail,
        "topic": letter.topic,
        "partition": letter.partition,
        "offset": letter.offset,
        "key": None if letter.key is None else letter.key.decode("utf-8", errors="replace"),
        "failed_at": format_ms(letter.failed_at),
        "redriven": redriven,
        "value_bytes": len(letter.value),
    }
    if as_json:
        view["value"] = base64.b64encode(letter.value).decode("ascii")
    else:
        view["value_preview"] = preview(letter.value)
    return view


@dataclass(frozen=True)
class Marker:
    """The redrive log's latest word on one letter."""

    coordinates: str  # the letter's DLQ partition:offset
    source: tuple[str, int, int]  # the letter's source topic, partition, offset
    state: str  # "sending" | "done"
    from_offset: int  # end offset of the target partition sampled before sending


def encode_marker(letter: Letter, state: str, from_offset: int, now_ms: int) -> bytes:
    return msgpack.packb(
        {
            "state": state,
            "dlq_partition": letter.dlq_partition,
            "dlq_offset": letter.dlq_offset,
            "reason": letter.reason,
            "topic": letter.topic,
            "partition": letter.partition,
            "offset": letter.offset,
            "from_offset": from_offset,
            "at": now_ms,
        },
        use_bin_type=True,
    )


def decode_marker(raw: bytes | None) -> Marker | None:
    try:
        m = msgpack.unpackb(raw or b"", raw=False)
        return Marker(
            f"{m['dlq_partition']}:{m['dlq_offset']}",
            (m["topic"], m["partition"], m["offset"]),
            m["state"],
            m["from_offset"],
        )
    except Exception:  # a foreign record in the log covers nothing
        return None


@dataclass
class Plan:
    """What a redrive does with the selected letters."""

    send: list[Letter] = field(default_factory=list)
    unsure: list[tuple[Letter, Marker]] = field(default_factory=list)  # `sending`, no `done`
    already: Counter[str] = field(default_factory=Counter)  # reason -> redriven before
    refused: Counter[str] = field(default_factory=Counter)  # source topic -> letters


def covering(letter: Letter, markers: dict[str, Marker]) -> Marker | None:
    """The marker of this letter; one naming other source coordinates belongs to a letter of
    an older DLQ topic of the same name (deleted and re-created), not to this one."""
    m = markers.get(letter.coordinates)
    return m if m is not None and m.source == letter.source else None


def plan_redrive(
    letters: Iterable[Letter],
    markers: dict[str, Marker],
    sources: Sequence[str],
    reason: str | None,
) -> Plan:
    """Select the letters of `reason` (all when None) and sort them by what the log says."""
    plan = Plan()
    for letter in letters:
        if reason is not None and letter.reason != reason:
            continue
        m = covering(letter, markers)
        if m is not None and m.state == "done":
            plan.already[letter.reason] += 1
        elif letter.topic not in sources:
            plan.refused[letter.topic or "(none)"] += 1
        elif m is not None:
            plan.unsure.append((letter, m))
        else:
            plan.send.append(letter)
    return plan


def redriven_coordinates(letters: Iterable[Letter], markers: dict[str, Marker]) -> set[str]:
    """The coordinates of the letters whose redrive is done."""
    out = set()
    for letter in letters:
        m = covering(letter, markers)
        if m is not None and m.state == "done":
            out.add(letter.coordinates)
    return out


# ---- Kafka -------------------------------------------------------------------------------------


def redrive_log(settings: Settings) -> str:
    return Topics(settings.topic_prefix).dlq_redriven


def transactional_id(settings: Settings) -> str:
    return f"{settings.group_id}-dlq-redrive"


async def read_ranges(
    settings: Settings,
    starts: dict[TopicPartition, int | None],
    *,
    committed_only: bool = False,
    stall_seconds: float = 60,
) -> list[Any]:
    """Every record from each start offset (None: the beginning) to the end offset sampled at
    start, without a consumer group; partitions of topics that do not exist are empty."""
    consumer = AIOKafkaConsumer(
        **client_options(settings),
        enable_auto_commit=False,
        isolation_level="read_committed" if committed_only else "read_uncommitted",
    )
    await consumer.start()
    try:
        existing = await consumer.topics()
        tps = [tp for tp in starts if tp.topic in existing]
        if not tps:
            return []
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        begins = await consumer.beginning_offsets(tps)
        pending = set()
        for tp in tps:
            start = max(begins[tp], starts[tp] or 0)
            if start < ends[tp]:
                consumer.seek(tp, start)
                pending.add(tp)
        out: list[Any] = []
        last_progress = time.monotonic()
        while pending:
            batch = await consumer.getmany(*pending, timeout_ms=500)
            for tp, records in batch.items():
                out += [r for r in records if r.offset < ends[tp]]
            moved = False
            for tp in list(pending):
                if await consumer.position(tp) >= ends[tp]:
                    pending.discard(tp)
                    moved = True
            if batch or moved:
                last_progress = time.monotonic()
            elif time.monotonic() - last_progress > stall_seconds:
                raise ReadTimeout(f"could not read to the end offsets in {stall_seconds:g} s")
        out.sort(key=lambda r: (r.topic, r.partition, r.offset))
        return out
    finally:
        await consumer.stop()


async def read_topic(settings: Settings, topic: str, *, committed_only: bool = False) -> list[Any]:
    """The whole topic, up to the end offsets sampled at start."""
    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    try:
        if topic not in set(await admin.list_topics()):
            return []
        (described,) = await admin.describe_topics([topic])
        parts = sorted(p["partition"] for p in described["partitions"])
    finally:
        await admin.close()
    starts: dict[TopicPartition, int | None] = {TopicPartition(topic, p): None for p in parts}
    return await read_ranges(settings, starts, committed_only=committed_only)


async def read_letters(settings: Settings) -> list[Letter]:
    records = await read_topic(settings, Topics(settings.topic_prefix).dlq)
    return [parse_letter(r.partition, r.offset, r.value) for r in records]


async def read_markers(settings: Settings) -> dict[str, Marker]:
    """The latest committed marker of every letter in the redrive log."""
    markers: dict[str, Marker] = {}
    for record in await read_topic(settings, redrive_log(settings), committed_only=True):
        m = decode_marker(record.value)
        if m is not None:
            markers[m.coordinates] = m
    return markers


async def delivered(settings: Settings, dlq: str, unsure: list[tuple[Letter, Marker]]) -> set[str]:
    """Which `sending` letters' records are in their target partitions (by their header)."""
    starts: dict[TopicPartition, int | None] = {}
    for letter, m in unsure:
        tp = TopicPartition(letter.topic, letter.partition)
        starts[tp] = min(m.from_offset, starts.get(tp) or m.from_offset)
    wanted = {f"{dlq}:{letter.coordinates}".encode(): letter for letter, _ in unsure}
    found: set[str] = set()
    for record in await read_ranges(settings, starts):
        for name, value in record.headers or ():
            hit = wanted.get(value) if name == HEADER else None
            if hit is not None and (record.topic, record.partition) == (hit.topic, hit.partition):
                found.add(hit.coordinates)
    return found


async def ensure_redrive_log(settings: Settings) -> None:
    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    try:
        if redrive_log(settings) not in set(await admin.list_topics()):
            topic = NewTopic(
                redrive_log(settings), 1, 1, topic_configs={"cleanup.policy": "compact"}
            )
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics([topic])
    finally:
        await admin.close()


@dataclass
class RedriveResult:
    dry_run: bool
    redriven: Counter[str]  # reason -> letters sent now (or that would be)
    already: Counter[str]  # reason -> letters redriven by an earlier run
    refused: Counter[str]  # source topic -> letters refused

    def as_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "redriven": dict(sorted(self.redriven.items())),
            "already_redriven": dict(sorted(self.already.items())),
            "refused": dict(sorted(self.refused.items())),
        }


async def redrive(settings: Settings, reason: str | None, dry_run: bool) -> RedriveResult:
    topics = Topics(settings.topic_prefix)
    if dry_run:
        plan = plan_redrive(
            await read_letters(settings), await read_markers(settings), topics.sources, reason
        )
        found = await delivered(settings, topics.dlq, plan.unsure)
        for letter, _ in plan.unsure:
            if letter.coordinates in found:
                plan.already[letter.reason] += 1
            else:
                plan.send.append(letter)
        would = Counter(letter.reason for letter in plan.send)
        return RedriveResult(True, would, plan.already, plan.refused)

    await ensure_redrive_log(settings)
    log_producer = AIOKafkaProducer(
        **client_options(settings),
        acks="all",
        enable_idempotence=True,
        transactional_id=transactional_id(settings),
    )
    producer = AIOKafkaProducer(**client_options(settings), acks="all", enable_idempotence=True)
    # start() registers the transactional id: every earlier redrive of this pipeline is fenced
    # (its next marker write fails) and its open log transaction aborted, so the log read below
    # is the whole truth.
    await log_producer.start()
    await producer.start()
    log = redrive_log(settings)

    async def mark(letters: list[Letter], state: str, froms: dict[tuple[str, int], int]) -> None:
        now_ms = int(time.time() * 1000)
        async with log_producer.transaction():
            futures = [
                await log_producer.send(
                    log,
                    encode_marker(x, state, froms.get((x.topic, x.partition), 0), now_ms),
                    key=x.coordinates.encode(),
                )
                for x in letters
            ]
            await asyncio.gather(*futures)

    try:
        plan = plan_redrive(
            await read_letters(settings), await read_markers(settings), topics.sources, reason
        )
        found = await delivered(settings, topics.dlq, plan.unsure)
        confirmed = [x for x, _ in plan.unsure if x.coordinates in found]
        if confirmed:  # delivered by a redrive that stopped before its `done` markers
            await mark(confirmed, "done", {})
            plan.already.update(x.reason for x in confirmed)
        plan.send += [x for x, _ in plan.unsure if x.coordinates not in found]
        plan.send.sort(key=lambda x: (x.dlq_partition, x.dlq_offset))

        sent: Counter[str] = Counter()
        for start in range(0, len(plan.send), BATCH):
            chunk = plan.send[start : start + BATCH]
            tps = sorted({TopicPartition(x.topic, x.partition) for x in chunk})
            ends = await end_offsets(settings, tps)
            froms = {(tp.topic, tp.partition): ends[tp] for tp in tps}
            await mark(chunk, "sending", froms)
            futures = [
                await producer.send(
                    x.topic,
                    x.value,
                    key=x.key,
                    partition=x.partition,
                    headers=[(HEADER, f"{topics.dlq}:{x.coordinates}".encode())],
                )
                for x in chunk
            ]
            await asyncio.gather(*futures)  # every record delivered (acks=all) ...
            await mark(chunk, "done", froms)  # ... before any of them counts as redriven
            sent.update(x.reason for x in chunk)
        return RedriveResult(False, sent, plan.already, plan.refused)
    finally:
        await producer.stop()
        await log_producer.stop()


async def end_offsets(settings: Settings, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(**client_options(settings), enable_auto_commit=False)
    await consumer.start()
    try:
        return dict(await consumer.end_offsets(tps))
    finally:
        await consumer.stop()
