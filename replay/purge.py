"""`profiles purge`: take deleted users' erased records out of the Kafka log too (GDPR).

A `delete` at T erases a user's records with time <= T from every projection, and the fold
ignores them when they come again (late, or on replay). Purge makes the log say the same: for
each named user it reads T from the user's fold state (`UserState.deleted_until` in the current
namespace; a user without an applied delete is refused) and removes from the source topics
every record of that user (by payload app_id/user_id, decoded with the project codec) with
event time <= T, *except* the user's delete commands, which stay so that records <= T that
arrive later keep being erased; records that name nobody (undecodable) go when they carry the
user's record key. A DLQ letter goes exactly when the record it carries (original key and
value) goes, and so does a dead-lettered company delta of the user. `company-deltas` is
truncated up to the offsets the live consumer group has committed (those deltas are applied;
they carry member rows with names and emails), never beyond.

Kafka cannot delete single records, so each partition that holds an erased record is
rewritten, crash-safe:

1. read it from its beginning to the end offset sampled at start;
2. copy the records to keep (key, value, headers, timestamp) to the staging topic
   `<prefix>purge-staging` (one partition, no retention), each with headers naming its target
   topic, partition and the sampled end; wait for delivery (acks=all, idempotent producer);
3. `DeleteRecords` up to the sampled end (the partition's start moves there);
4. produce the staged records into their target partition again, in their original order.

When every partition is done the staging topic is deleted. A purge that finds a staging topic
first restores what it holds: for a partition whose start reached the staged end (truncated)
it produces the staged records that are not there yet; a partition not truncated still holds
the originals, so its staged copy is dropped. Re-producing a record twice is harmless anyway:
the fold drops duplicate event_ids/command_ids, and the records keep their event times.
Records produced while a purge runs sit after the sampled end and stay. The live worker reads
the re-produced records at their new offsets (above every fence) and they change nothing;
a kept *bad* record in a rewritten partition is dead-lettered once more (a second letter of
the same record; redriving either is harmless). Rewriting the DLQ moves its letters to new
offsets, so `dlq redrive` may send a letter it had sent before again (also harmless).

One purge at a time; not while a replay is under way (it refuses).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.records_to_delete import RecordsToDelete
from aiokafka.errors import TopicAlreadyExistsError

from projections import keys, namespaces
from projections.fold import Index, decode_field, deleted_until, erased_by_delete
from projections.origins import is_link
from replay.dlq import UNREADABLE, parse_letter
from schemas.codec import decode_bytes, validate
from schemas.limits import Limits
from schemas.models import Command
from schemas.timefmt import format_ms, parse_timestamp
from streams.kafka import client_options
from streams.settings import Settings
from streams.topics import Topics, record_key

H_TOPIC = "profiles-purge-topic"
H_PARTITION = "profiles-purge-partition"
H_END = "profiles-purge-end"
TAGS = (H_TOPIC, H_PARTITION, H_END)
CHUNK = 1000  # records in flight per delivery wait
STALL_SECONDS = 60.0

# Classification is about whose data a record holds, not whether the worker accepts it now:
# no size or time window, so an old or oversized record of an erased user is erased too.
OPEN_LIMITS = Limits(
    max_keys=1 << 30,
    max_string_bytes=1 << 40,
    max_record_bytes=1 << 40,
    max_future_hours=10**7,
    retention_days=10**7,
    max_depth=64,
)

User = tuple[str, str]  # (app_id, user_id)


class PurgeError(Exception):
    """A purge that cannot start or go on; the message says why."""


# ---- pure: whose record is it, and is it erased ------------------------------------------------


@dataclass(frozen=True)
class Owner:
    """The user a record belongs to, its event time, and whether it is a delete command."""

    app_id: str
    user_id: str
    at: int
    is_delete: bool

    @property
    def user(self) -> User:
        return (self.app_id, self.user_id)


def owner_of(raw: bytes | None) -> Owner | None:
    """Decode a record value with the project codec; None when it names no user and time.

    A record the schema rejects still belongs to the user its app_id/user_id strings name."""
    try:
        obj = decode_bytes(raw or b"", OPEN_LIMITS)
    except Exception:  # not a map at all: it names nobody, and is kept
        return None
    try:
        record = validate(obj, OPEN_LIMITS, int(time.time() * 1000))
    except Exception:
        return _loose_owner(obj)
    if is_link(record):  # an alias or unmerge: a link, never erased (docs/design.md §7)
        at = record.issued_at if isinstance(record, Command) else record.timestamp
        return Owner(record.app_id, record.user_id, at, True)
    if isinstance(record, Command):
        return Owner(record.app_id, record.user_id, record.issued_at, record.command == "delete")
    return Owner(record.app_id, record.user_id, record.timestamp, False)


def _loose_owner(obj: dict[str, Any]) -> Owner | None:
    app_id, user_id = obj.get("app_id"), obj.get("user_id")
    if not isinstance(app_id, str) or not isinstance(user_id, str):
        return None
    is_command = obj.get("type") == "command"
    try:
        at = parse_timestamp(obj.get("issued_at" if is_command else "timestamp"))
    except Exception:
        return None
    return Owner(app_id, user_id, at, is_command and obj.get("command") == "delete")


def erased_record(raw: bytes | None, key: bytes | None, deletes: dict[User, int]) -> User | None:
    """The purged user whose erased record this is, else None (kept).

    Erased: a record whose payload names a purged user, with event time <= T, that is not a
    delete command; and a record that names no user and time (undecodable) but carries a
    purged user's record key: the worker rejected it, and it would be dead-lettered again
    under that key when the rewritten partition is read anew."""
    owner = owner_of(raw)
    if owner is None:
        by_key = {record_key(*u): u for u in deletes}
        return by_key.get(key) if key is not None else None
    erased = erased_by_delete(owner.at, owner.is_delete, deletes.get(owner.user))
    return owner.user if erased else None


def erased_letter(raw: bytes | None, deletes: dict[User, int]) -> User | None:
    """The purged user whose data this DLQ letter carries, else None (kept).

    A letter goes exactly when the record it carries (original key and value) is erased: so
    every letter under a purged user's key goes, except those whose value is a record that
    stays in the source topics too (that user's own records after T, its delete commands, or
    another user's record). A dead-lettered company delta of a purged user goes too: it is
    derived data carrying the user's member row (name, email), like the applied deltas."""
    letter = parse_letter(0, 0, raw)
    if letter.reason == UNREADABLE:
        return None
    delta_of = _delta_users(letter.value)
    if delta_of is not None:  # a dead-lettered company delta: derived from its users' records
        return next((u for u in delta_of if u in deletes), None)
    return erased_record(letter.value, letter.key, deletes)


def _delta_users(raw: bytes) -> list[User] | None:
    """The users a company delta (their parts, with their member rows) is from, else None."""
    try:
        obj = decode_bytes(raw, OPEN_LIMITS)
    except Exception:
        return None
    app_id, parts = obj.get("app_id"), obj.get("parts")
    if obj.get("type") != "company_delta" or not isinstance(app_id, str):
        return None
    if not isinstance(parts, list):
        return []
    return [
        (app_id, p["user_id"])
        for p in parts
        if isinstance(p, dict) and isinstance(p.get("user_id"), str)
    ]


# ---- the result --------------------------------------------------------------------------------


@dataclass
class Count:
    removed: int = 0
    kept: int = 0


@dataclass
class PurgeResult:
    app_id: str
    dry_run: bool
    deleted_until: dict[str, int] = field(default_factory=dict)  # user -> T
    refused: dict[str, str] = field(default_factory=dict)  # user -> why
    topics: dict[str, Count] = field(default_factory=dict)
    by_user: Counter[str] = field(default_factory=Counter)  # records + letters removed
    rewritten: list[str] = field(default_factory=list)  # "topic[partition]"
    restored: int = 0  # records an interrupted purge had staged, produced again now
    staging_found: bool = False

    def count(self, topic: str) -> Count:
        return self.topics.setdefault(topic, Count())

    def as_dict(self) -> dict[str, Any]:
        return {
            "app_id": self.app_id,
            "dry_run": self.dry_run,
            "users": {
                u: {"deleted_until": format_ms(t), "removed": self.by_user[u]}
                for u, t in sorted(self.deleted_until.items())
            },
            "refused": dict(sorted(self.refused.items())),
            "topics": {
                t: {"removed": c.removed, "kept": c.kept} for t, c in sorted(self.topics.items())
            },
            "removed": sum(c.removed for c in self.topics.values()),
            "partitions_rewritten": self.rewritten,
            "interrupted_purge_found": self.staging_found,
            "restored_from_staging": self.restored,
        }


# ---- Redis: who may be purged ------------------------------------------------------------------


async def delete_times(
    client: Any, settings: Settings, app_id: str, user_ids: Sequence[str]
) -> tuple[dict[str, int], dict[str, str]]:
    """Each user's applied delete time T, and the users refused (no delete applied). A
    delete reaches every id joined to its id by an alias, in force or not (docs/design.md §7):
    those ids are purged with it, each to the delete time its own state applied."""
    pointer = await namespaces.read(client, settings.namespace)
    if pointer.next is not None:
        raise PurgeError(
            f"a replay into {pointer.next!r} is under way; let it finish (`profiles replay`) "
            f"and purge afterwards"
        )
    found: dict[str, int] = {}
    refused: dict[str, str] = {}
    named = list(dict.fromkeys(user_ids))
    joined = await _connected(client, keys.identity_graph(pointer.current, app_id), named)
    for user_id in [*named, *(j for j in joined if j not in named)]:
        raw = await client.hget(keys.user(pointer.current, app_id, user_id), keys.INDEX)
        until = deleted_until(Index.from_bytes(raw).commands)
        if until is None:
            refused[user_id] = (
                "no delete command has been applied for this user "
                "(send `profiles command delete`, wait for the worker, then purge)"
            )
        else:
            found[user_id] = until
    return found, refused


async def _connected(client: Any, graph: str, user_ids: list[str]) -> list[str]:
    """Every id joined to these by an alias, in the app's link graph, sorted."""
    seen: set[str] = set()
    frontier = set(user_ids)
    while frontier:
        seen |= frontier
        names = sorted(frontier)
        found = await client.hmget(graph, [f"a:{x}" for x in names])
        frontier = {y for raw in found if raw is not None for y in decode_field(raw)} - seen
    return sorted(seen - set(user_ids))


# ---- Kafka -------------------------------------------------------------------------------------


class Kafka:
    """The clients one purge uses: admin, a group-less consumer, an idempotent producer."""

    def __init__(self, settings: Settings, produce: bool) -> None:
        opts = client_options(settings)
        self.admin = AIOKafkaAdminClient(**opts)
        self.consumer = AIOKafkaConsumer(**opts, enable_auto_commit=False)
        self.producer = (
            AIOKafkaProducer(**opts, acks="all", enable_idempotence=True) if produce else None
        )

    async def __aenter__(self) -> Kafka:
        await self.admin.start()
        await self.consumer.start()
        if self.producer is not None:
            await self.producer.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        if self.producer is not None:
            await self.producer.stop()
        await self.consumer.stop()
        await self.admin.close()

    async def partitions(self, topics: list[str]) -> list[TopicPartition]:
        existing = set(await self.admin.list_topics())
        wanted = [t for t in topics if t in existing]
        described = await self.admin.describe_topics(wanted) if wanted else []
        found = {d["topic"]: sorted(p["partition"] for p in d["partitions"]) for d in described}
        return [TopicPartition(t, p) for t in wanted for p in found.get(t, [])]

    async def bounds(
        self, tps: list[TopicPartition]
    ) -> tuple[dict[TopicPartition, int], dict[TopicPartition, int]]:
        if not tps:
            return {}, {}
        return (
            dict(await self.consumer.beginning_offsets(tps)),
            dict(await self.consumer.end_offsets(tps)),
        )

    async def read(self, tp: TopicPartition, start: int, end: int) -> list[Any]:
        """The records of one partition from `start` to `end` (exclusive)."""
        if start >= end:
            return []
        self.consumer.assign([tp])
        self.consumer.seek(tp, start)
        out: list[Any] = []
        last = time.monotonic()
        while True:
            batch = await self.consumer.getmany(tp, timeout_ms=500)
            records = batch.get(tp, [])
            out += [r for r in records if r.offset < end]
            if await self.consumer.position(tp) >= end:
                return out
            if records:
                last = time.monotonic()
            elif time.monotonic() - last > STALL_SECONDS:
                raise PurgeError(f"could not read {tp.topic}[{tp.partition}] to offset {end}")

    async def produce(self, topic: str, partition: int, records: list[tuple[Any, list]]) -> None:
        """Produce (record, headers) in order into one partition; return once all are acked."""
        assert self.producer is not None
        for start in range(0, len(records), CHUNK):
            futures = [
                await self.producer.send(
                    topic,
                    r.value,
                    key=r.key,
                    partition=partition,
                    timestamp_ms=r.timestamp,
                    headers=headers,
                )
                for r, headers in records[start : start + CHUNK]
            ]
            await asyncio.gather(*futures)

    async def truncate(self, tp: TopicPartition, before: int) -> None:
        await self.admin.delete_records({tp: RecordsToDelete(before_offset=before)})

    async def create_staging(self, name: str) -> None:
        deadline = time.monotonic() + 30
        topic = NewTopic(name, 1, 1, topic_configs={"retention.ms": "-1", "retention.bytes": "-1"})
        while True:
            try:
                await self.admin.create_topics([topic])
                return
            except TopicAlreadyExistsError:  # still being deleted by the last purge, or racing
                if time.monotonic() > deadline:
                    raise PurgeError(
                        f"the staging topic {name} exists: is another purge running?"
                    ) from None
                await asyncio.sleep(0.5)


def _tags(headers: Sequence[tuple[str, bytes]]) -> tuple[list[tuple[str, bytes]], dict[str, str]]:
    """A staged record's original headers, and its staging tags."""
    original = list(headers)
    tail = original[-len(TAGS) :]
    if [name for name, _ in tail] != list(TAGS):
        return original, {}
    return original[: -len(TAGS)], {name: value.decode() for name, value in tail}


def _same(a: Any, a_headers: list[tuple[str, bytes]], b: Any) -> bool:
    mine = (a.key, a.value, a.timestamp, a_headers)
    return mine == (b.key, b.value, b.timestamp, list(b.headers))


async def restore_staged(kafka: Kafka, staging: str) -> int:
    """Finish what an interrupted purge left in the staging topic; returns records produced."""
    tp = TopicPartition(staging, 0)
    begins, ends = await kafka.bounds([tp])
    groups: dict[tuple[str, int, int], list[tuple[Any, list[tuple[str, bytes]]]]] = {}
    for record in await kafka.read(tp, begins[tp], ends[tp]):
        headers, tags = _tags(record.headers)
        if tags:
            target = (tags[H_TOPIC], int(tags[H_PARTITION]), int(tags[H_END]))
            groups.setdefault(target, []).append((record, headers))
    produced = 0
    existing = set(await kafka.admin.list_topics())
    for (topic, partition, end), staged in groups.items():
        target = TopicPartition(topic, partition)
        if topic not in existing:
            continue
        t_begins, t_ends = await kafka.bounds([target])
        if t_begins[target] < end:
            continue  # never truncated: the originals are still there
        done = 0  # the staged records already re-produced, in order, after `end`
        for record in await kafka.read(target, end, t_ends[target]):
            if done < len(staged) and _same(*staged[done], record):
                done += 1
        await kafka.produce(topic, partition, staged[done:])
        produced += len(staged) - done
    if ends[tp] > begins[tp]:
        await kafka.truncate(tp, ends[tp])  # restored: this run stages from an empty topic
    return produced


Report = Callable[[str], None]


async def purge(
    settings: Settings,
    client: Any,
    app_id: str,
    user_ids: Sequence[str],
    *,
    dry_run: bool,
    report: Report = lambda _line: None,
) -> PurgeResult:
    result = PurgeResult(app_id, dry_run)
    result.deleted_until, result.refused = await delete_times(client, settings, app_id, user_ids)
    if not result.deleted_until:
        return result
    deletes = {(app_id, u): t for u, t in result.deleted_until.items()}
    topics = Topics(settings.topic_prefix)
    staging = topics.purge_staging
    async with Kafka(settings, produce=not dry_run) as kafka:
        result.staging_found = staging in set(await kafka.admin.list_topics())
        if result.staging_found:
            if dry_run:
                report(f"{staging} holds records of an interrupted purge; a purge restores them")
            else:
                result.restored = await restore_staged(kafka, staging)
                report(f"restored {result.restored} records staged by an interrupted purge")
        have_staging = result.staging_found

        tps = await kafka.partitions([*topics.sources, topics.dlq])
        begins, ends = await kafka.bounds(tps)  # the sampled ends: nothing after is touched
        for tp in tps:
            records = await kafka.read(tp, begins[tp], ends[tp])
            kept: list[tuple[Any, list[tuple[str, bytes]]]] = []
            removed = 0
            for record in records:
                who = (
                    erased_letter(record.value, deletes)
                    if tp.topic == topics.dlq
                    else erased_record(record.value, record.key, deletes)
                )
                if who is None:
                    kept.append((record, list(record.headers)))
                else:
                    removed += 1
                    result.by_user[who[1]] += 1
            count = result.count(tp.topic)
            count.removed += removed
            count.kept += len(kept)
            if not removed or dry_run:
                continue
            if not have_staging:
                await kafka.create_staging(staging)
                have_staging = True
            tags = [
                (H_TOPIC, tp.topic.encode()),
                (H_PARTITION, str(tp.partition).encode()),
                (H_END, str(ends[tp]).encode()),
            ]
            await kafka.produce(staging, 0, [(r, [*h, *tags]) for r, h in kept])
            await kafka.truncate(tp, ends[tp])
            await kafka.produce(tp.topic, tp.partition, kept)
            result.rewritten.append(f"{tp.topic}[{tp.partition}]")
            report(f"rewrote {tp.topic}[{tp.partition}]: removed {removed}, kept {len(kept)}")

        await _truncate_applied_deltas(kafka, settings, topics, result)
        if have_staging and not dry_run:
            await kafka.admin.delete_topics([staging])
    return result


async def _truncate_applied_deltas(
    kafka: Kafka, settings: Settings, topics: Topics, result: PurgeResult
) -> None:
    """Company deltas, identity links and merge messages (which carry copies of records,
    docs/design.md §7) the live group has committed are applied: drop them, never more."""
    tps = await kafka.partitions([topics.company_deltas, topics.identity, topics.merges])
    begins, ends = await kafka.bounds(tps)
    try:
        committed = await kafka.admin.list_consumer_group_offsets(settings.group_id)
    except Exception:  # no group yet: nothing is applied, nothing goes
        committed = {}
    for tp in tps:
        count = result.count(tp.topic)
        meta = committed.get(tp)
        upto = meta.offset if meta is not None and meta.offset > begins[tp] else begins[tp]
        upto = min(upto, ends[tp])
        count.removed += upto - begins[tp]
        count.kept += ends[tp] - upto
        if upto > begins[tp] and not result.dry_run:
            await kafka.truncate(tp, upto)
