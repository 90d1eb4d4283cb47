"""`profiles publish` is an SDK's publisher (issue 21, item 2): it refuses `command` records,
which are an operator's, unless asked with --commands; it keys and routes every record, an
`alias` included (docs/design.md §7)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from schemas.codec import validate
from schemas.limits import Limits
from schemas.models import RECORD_TYPES, Command
from streams.publish import COMMAND_REFUSED, check_lines, command_record, send_record
from streams.settings import Settings
from streams.topics import SOURCE_TOPICS, Topics, key_of, record_key

NOW = int(time.time() * 1000)
TRACK = {"type": "track", "app_id": "a", "user_id": "u", "event_id": "e", "timestamp": NOW,
         "name": "Go"}  # fmt: skip
COMMAND = {"type": "command", "app_id": "a", "user_id": "u", "command_id": "c", "issued_at": NOW,
           "command": "delete"}  # fmt: skip
ALIAS = {"type": "alias", "app_id": "a", "user_id": "u", "previous_id": "anon-1",
         "event_id": "e2", "timestamp": NOW}  # fmt: skip
UNMERGE = {**COMMAND, "command_id": "c2", "command": "unmerge", "user_id": "anon-1"}


def test_commands_are_refused_unless_asked_for() -> None:
    lines = [json.dumps(TRACK), json.dumps(COMMAND)]
    good, report = check_lines(lines, Settings())
    assert good == [TRACK]
    assert report.rejected == [(2, COMMAND_REFUSED)]
    assert COMMAND_REFUSED.startswith("command_refused: ") and "--commands" in COMMAND_REFUSED
    good, report = check_lines(lines, Settings(), commands=True)
    assert good == [TRACK, COMMAND] and report.rejected == []


def test_unmerge_is_an_operators_command_and_an_alias_an_sdks_record() -> None:
    lines = [json.dumps(ALIAS), json.dumps(UNMERGE), json.dumps(TRACK)]
    good, report = check_lines(lines, Settings())
    assert good == [ALIAS, TRACK]
    assert report.rejected == [(2, COMMAND_REFUSED)]
    assert "unmerge" in COMMAND_REFUSED
    good, report = check_lines(lines, Settings(), commands=True)
    assert good == [ALIAS, UNMERGE, TRACK] and report.rejected == []


def test_an_alias_into_itself_is_rejected_by_line() -> None:
    lines = [json.dumps({**ALIAS, "previous_id": "u"}), json.dumps(TRACK)]
    good, report = check_lines(lines, Settings())
    assert good == [TRACK]
    [(number, reason)] = report.rejected
    assert number == 1 and reason.startswith("invalid_field: ")


def test_command_record_makes_an_unmerge_of_the_previous_id() -> None:
    record = command_record("unmerge", "a", "anon-1", NOW, "shared device")
    command = validate(record, Limits(), NOW)
    assert isinstance(command, Command)
    assert (command.command, command.user_id) == ("unmerge", "anon-1")
    assert command.reason == "shared device"
    assert key_of(record) == b"a:anon-1"


# --------------------------------------------------------------------------- keys and topics


@pytest.mark.parametrize(
    ("record", "key"),
    [
        (TRACK, b"a:u"),
        (COMMAND, b"a:u"),
        (UNMERGE, b"a:anon-1"),  # a command's user is the id it acts on
        (ALIAS, b"a:anon-1"),  # an alias lands where its previous id's records are
        ({**ALIAS, "user_id": "k", "previous_id": "ü:{x}*"}, "a:ü:{x}*".encode()),
    ],
)
def test_key_of_a_record(record: dict[str, Any], key: bytes) -> None:
    assert key_of(record) == key
    if record["type"] != "alias":
        assert key == record_key(record["app_id"], record["user_id"])


def test_every_record_type_has_a_topic_and_each_topic_is_a_source_once() -> None:
    topics = Topics()
    assert set(SOURCE_TOPICS) == set(RECORD_TYPES)
    assert topics.for_type("alias") == topics.for_type("identify") == "profiles.identify"
    assert topics.for_type("command") == "profiles.commands"
    assert len(topics.sources) == len(set(topics.sources))
    assert set(topics.sources) == {topics.for_type(t) for t in RECORD_TYPES}
    assert topics.type_of("profiles.identify") == "identify"


class Producer:
    """What send_record asks of an AIOKafkaProducer."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes]] = []

    async def send(self, topic: str, value: bytes, key: bytes) -> asyncio.Future[Any]:
        self.sent.append((topic, value, key))
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


def test_send_record_routes_and_keys_an_alias() -> None:
    producer = Producer()
    topics = Topics("stage.")

    async def send_all() -> None:
        for record in (ALIAS, UNMERGE, TRACK):
            await send_record(producer, topics, record)  # type: ignore[arg-type]

    asyncio.run(send_all())
    assert [(topic, key) for topic, _value, key in producer.sent] == [
        ("stage.identify", b"a:anon-1"),
        ("stage.commands", b"a:anon-1"),
        ("stage.track", b"a:u"),
    ]
