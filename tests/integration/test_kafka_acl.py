"""Kafka ACL roles on the real broker: scripts/services turns the authorizer on and creates a
SCRAM user per role (profiles-sdk, profiles-operator, profiles-worker); each test gives them
the roles' ACLs on its own pipeline (`profiles kafka-acl ROLE USER --apply`, as the PLAINTEXT
listener's super user) and takes them back after. What a role may not do, the broker refuses."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import GroupAuthorizationFailedError, TopicAuthorizationFailedError
from compare import compare_users
from pipelinekit import PROFILES, Pipeline
from test_kafka_sasl import sasl_address

from schemas.generate import generate
from streams.kafka import client_options, describe_acls, ensure_topics, partitions
from streams.kafka_acl import ROLES, bindings, ensured_topics
from streams.settings import Settings
from streams.topics import Topics

pytestmark = pytest.mark.integration

REFUSED = "profiles: kafka: the ACLs of this login do not allow it: "


class Roles:
    """The pipeline, with the ACLs of every role for its users, and the env of each user."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self.admin = pipeline.env  # PLAINTEXT: User:ANONYMOUS, a super user
        host, port = sasl_address(pipeline.env)
        self.sasl = {
            "PROFILES_KAFKA_BOOTSTRAP": f"{host}:{port}",
            "PROFILES_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "PROFILES_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        }

    def env(self, role: str) -> dict[str, str]:
        variable = f"PROFILES_KAFKA_SASL_LOCAL_{role.upper()}_PASSWORD"
        return {
            **self.admin,
            **self.sasl,
            "PROFILES_KAFKA_SASL_USERNAME": f"profiles-{role}",
            "PROFILES_KAFKA_SASL_PASSWORD": os.environ.get(
                variable, f"profiles-{role}-local-secret"
            ),
        }

    def settings(self, role: str) -> Settings:
        env = self.env(role)
        return Settings(**{k[9:].lower(): v for k, v in env.items() if k.startswith("PROFILES_")})

    def profiles(self, role: str, *args: str) -> subprocess.CompletedProcess[str]:
        return run(self.env(role), *args)

    def grant(self, verb: str) -> None:
        for role in ROLES:
            done = run(self.admin, "kafka-acl", role, f"User:profiles-{role}", verb)
            assert done.returncode == 0, done.stderr

    def jsonl(self, name: str, records: list[dict[str, Any]]) -> Path:
        path = self.pipeline.tmp / name
        path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
        return path

    def make_topics(self) -> None:
        """Create the pipeline's topics as the super user (an SDK may not), and wait until the
        broker lists them with their partitions: what `publish` looks for first."""
        settings = self.pipeline.settings
        asyncio.run(ensure_topics(settings))
        names = ensured_topics(Topics(settings.topic_prefix))
        deadline = time.monotonic() + 30
        while {tp.topic for tp in asyncio.run(partitions(settings, names))} != set(names):
            assert time.monotonic() < deadline, "the new topics do not show"
            time.sleep(0.05)

    def end_offsets(self) -> dict[str, int]:
        """Records in each source topic, read as the super user."""
        out = dict.fromkeys(Topics(self.pipeline.settings.topic_prefix).sources, 0)
        for row in self.pipeline.status()["groups"][0]["partitions"]:
            if row["topic"] in out:
                out[row["topic"]] += row["end"]
        return out


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PROFILES, *args], env=env, text=True, capture_output=True, timeout=120, check=False
    )


@pytest.fixture
def roles(pipeline: Pipeline) -> Iterator[Roles]:
    r = Roles(pipeline)
    r.grant("--apply")
    try:
        yield r
    finally:
        pipeline.stop()
        r.grant("--revoke")


def assert_refused(result: subprocess.CompletedProcess[str], what: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert result.stderr.count("\n") == 1, result.stderr  # one line, no traceback
    assert result.stderr.startswith(REFUSED), result.stderr
    assert what in result.stderr, result.stderr


def records(now_ms: int, users: int = 3) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A generated set: its events, and its commands."""
    found = generate(users=users, days=4, end_ms=now_ms, seed=21, commands=True)
    commands = [r for r in found if r["type"] == "command"]
    assert commands
    return [r for r in found if r["type"] != "command"], commands


def test_the_sdk_writes_events_and_is_refused_commands_and_reads(roles: Roles) -> None:
    topics = Topics(roles.pipeline.settings.topic_prefix)
    roles.make_topics()
    events, commands = records(int(time.time() * 1000))
    sent = roles.profiles("sdk", "publish", str(roles.jsonl("events.jsonl", events)))
    assert sent.returncode == 0, sent.stderr
    refused = roles.profiles(
        "sdk", "publish", "--commands", str(roles.jsonl("commands.jsonl", commands))
    )
    assert_refused(refused, f"TopicAuthorizationFailedError: {topics.for_type('command')}")
    ends = roles.end_offsets()
    assert ends.pop(topics.for_type("command")) == 0
    assert sum(ends.values()) == len(events)

    settings = roles.settings("sdk")
    with pytest.raises(TopicAuthorizationFailedError):  # no group: the topic's ACL refuses
        asyncio.run(_read(settings, topics.for_type("track"), group=None))
    with pytest.raises(GroupAuthorizationFailedError):
        asyncio.run(_read(settings, topics.for_type("track"), group=settings.group_id))
    with pytest.raises(TopicAuthorizationFailedError):  # not even through the producer API
        asyncio.run(_write(settings, topics.dlq))
    assert_refused(roles.profiles("sdk", "status"), "GroupAuthorizationFailedError")


def test_the_operator_sends_commands_watches_and_is_refused_events(roles: Roles) -> None:
    topics = Topics(roles.pipeline.settings.topic_prefix)
    roles.make_topics()
    events, commands = records(int(time.time() * 1000))
    sent = roles.profiles(
        "operator", "publish", "--commands", str(roles.jsonl("commands.jsonl", commands))
    )
    assert sent.returncode == 0, sent.stderr
    one = roles.profiles("operator", "command", "exclude", "acme-app", "u-1")
    assert one.returncode == 0, one.stderr
    refused = roles.profiles("operator", "publish", str(roles.jsonl("events.jsonl", events)))
    assert_refused(refused, "TopicAuthorizationFailedError")
    ends = roles.end_offsets()
    assert ends.pop(topics.for_type("command")) == len(commands) + 1
    assert sum(ends.values()) == 0

    status = roles.profiles("operator", "status", "--json")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["lag"] == len(commands) + 1  # no worker yet
    with pytest.raises(TopicAuthorizationFailedError):  # sends commands, never reads them
        asyncio.run(_read(roles.settings("operator"), topics.for_type("command"), group=None))


def test_a_worker_role_runs_the_pipeline_over_sasl(roles: Roles) -> None:
    now_ms = int(time.time() * 1000)
    events, commands = records(now_ms, users=4)
    worker = roles.pipeline
    worker.env = roles.env("worker")  # the worker creates the topics and runs over SASL
    proc = worker.start_worker()
    log, deadline = worker.tmp / "worker-0.log", time.monotonic() + 60
    while "assigned" not in log.read_text():  # it made the topics, which an SDK may not
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.2)
    sent = roles.profiles("sdk", "publish", str(roles.jsonl("events.jsonl", events)))
    assert sent.returncode == 0, sent.stderr
    sent = roles.profiles(
        "operator", "publish", "--commands", str(roles.jsonl("commands.jsonl", commands))
    )
    assert sent.returncode == 0, sent.stderr

    deadline = time.monotonic() + 120
    while True:  # watched as the operator
        status = roles.profiles("operator", "status", "--json")
        assert status.returncode == 0, status.stderr
        state = json.loads(status.stdout)
        if state["lag"] == 0 and state["groups"][0]["processed"] == len(events) + len(commands):
            break
        assert all(w.poll() is None for w in worker.workers), "the worker exited"
        assert time.monotonic() < deadline, f"still lagging: {state['lag']}"
        time.sleep(0.5)
    assert state["dlq"] == 0
    everything = events + commands
    assert compare_users(worker, everything, now_ms) == len({r["user_id"] for r in everything})
    text = log.read_text()
    assert "Authorization" not in text and "cannot check" not in text, text
    # what it needs only: it may not write the SDKs' topics
    refused = roles.profiles("worker", "publish", str(roles.jsonl("again.jsonl", events[:1])))
    assert_refused(refused, "TopicAuthorizationFailedError")


def test_scripts_services_gave_the_role_users_their_acls(services: None) -> None:
    """`scripts/services up` (the session's, with this environment's prefix and group)
    applied every role's ACLs to its user."""
    admin = Settings()
    for role in ROLES:
        who = f"User:profiles-{role}"
        found = set(asyncio.run(describe_acls(admin, who)))
        missing = [str(b) for b in bindings(role, who, admin) if b not in found]
        assert not missing, missing


async def _read(settings: Settings, topic: str, group: str | None) -> None:
    consumer = AIOKafkaConsumer(
        **client_options(settings), group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            await consumer.getmany(tp, timeout_ms=500)
            if group is not None:
                await consumer.committed(tp)  # a group's offsets: the group's ACL
        raise AssertionError(f"read {topic} for 30 s without a refusal")
    finally:
        await consumer.stop()


async def _write(settings: Settings, topic: str) -> None:
    producer = AIOKafkaProducer(**client_options(settings), enable_idempotence=True)
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"x", key=b"acme-app:u-1")
    finally:
        await producer.stop()
