"""What the pipeline's topics keep (issue 17), on the real broker: the topics it creates keep
source records and dead letters for the retention plus the future window (and a day), and
commands forever; a topic altered down to Kafka's 7-day default is reported by `profiles
status` (and `--json`) and by the worker's start-up check, listed by `profiles topics`, and
`profiles topics --apply-retention` fixes it without touching its other configs."""

from __future__ import annotations

import asyncio
import subprocess
import time
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from pipelinekit import PROFILES, ROOT, Pipeline

from streams.kafka import client_options, ensure_topics
from streams.settings import Settings
from streams.topics import Topics

pytestmark = pytest.mark.integration

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
WEEK_MS = 7 * DAY_MS
# PROFILES_RETENTION_DAYS (400) + PROFILES_MAX_FUTURE_HOURS (24) + a day, spelled out here
REQUIRED_MS = 400 * DAY_MS + 24 * HOUR_MS + DAY_MS


async def _configs(settings: Settings, names: list[str]) -> dict[str, dict[str, tuple[str, int]]]:
    """topic -> config -> (value, source), straight from the broker."""
    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    deadline = time.monotonic() + 30
    try:
        while True:
            found = await admin.describe_configs(
                [ConfigResource(ConfigResourceType.TOPIC, n) for n in names]
            )
            codes = [r[0] for response in found for r in response.resources]
            # 3, unknown topic: a topic created a moment ago the broker has not learned yet
            if 3 not in codes or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
    finally:
        await admin.close()
    out = {}
    for response in found:
        for code, _msg, _type, name, entries in response.resources:
            assert code == 0, (name, code)
            out[name] = {e[0]: (e[1], e[3]) for e in entries}
    return out


async def _alter(settings: Settings, topic: str, configs: dict[str, str]) -> None:
    """AlterConfigs (not incremental): the topic's dynamic configs become exactly these."""
    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    try:
        responses = await admin.alter_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic, configs)]
        )
    finally:
        await admin.close()
    for response in responses:
        for code, message, *_ in response.resources:
            assert code == 0, message


def configs(p: Pipeline, names: list[str]) -> dict[str, dict[str, tuple[str, int]]]:
    return asyncio.run(_configs(p.settings, names))


def status_retention(p: Pipeline, until: Any, timeout: float = 10) -> list[dict[str, Any]]:
    """`profiles status --json`'s "retention" once `until` holds for it (a config change can
    take a moment to reach the broker's metadata)."""
    deadline = time.monotonic() + timeout
    while True:
        result = p.cli_json("status")
        assert {"groups", "dlq", "lag", "retention"} <= set(result), result
        if until(result["retention"]) or time.monotonic() > deadline:
            return list(result["retention"])
        time.sleep(0.2)


def test_topics_keep_what_a_replay_needs_and_short_ones_are_reported_and_fixed(
    pipeline: Pipeline,
) -> None:
    p = pipeline
    t = Topics(p.settings.topic_prefix)
    events = [t.for_type(k) for k in ("identify", "track", "page", "feedback", "content")]
    commands = t.for_type("command")

    # Before the pipeline ran, `profiles topics` lists every topic as missing.
    listed = p.cli_json("topics")
    assert [r["topic"] for r in listed["topics"]][:7] == [*events, commands, t.dlq]
    assert not any(r["exists"] for r in listed["topics"])

    # Created by the pipeline (the worker, publish and replay all start with ensure_topics).
    assert asyncio.run(ensure_topics(p.settings)) == []
    found = configs(p, [*events, commands, t.dlq, t.company_deltas, t.segments])
    for name in [*events, t.dlq]:
        assert int(found[name]["retention.ms"][0]) >= REQUIRED_MS, name
        assert found[name]["retention.bytes"][0] == "-1", name
        assert found[name]["cleanup.policy"][0] == "delete", name
    assert found[commands]["retention.ms"][0] == "-1"  # forever
    assert found[commands]["retention.bytes"][0] == "-1"
    assert found[commands]["cleanup.policy"][0] == "delete"  # every command of a key matters
    assert found[t.segments]["cleanup.policy"][0] == "compact"
    assert found[t.company_deltas]["max.message.bytes"][0] == str(16 * 1024 * 1024)
    assert status_retention(p, lambda r: True) == []
    assert "warning" not in p.cli("status").stdout

    # An operator (or an older version) left the track topic at Kafka's 7-day default and put
    # a size limit on the dead letters; the commands topic keeps 30 days.
    track = t.for_type("track")
    asyncio.run(_alter(p.settings, track, {"retention.ms": str(WEEK_MS), "segment.ms": "3600000"}))
    asyncio.run(_alter(p.settings, t.dlq, {"retention.ms": "-1", "retention.bytes": "1048576"}))
    asyncio.run(_alter(p.settings, commands, {"retention.ms": str(30 * DAY_MS)}))
    short = {r["topic"]: r for r in status_retention(p, lambda r: len(r) == 3)}
    assert set(short) == {track, t.dlq, commands}
    assert (short[track]["retention_ms"], short[track]["required_ms"]) == (WEEK_MS, REQUIRED_MS)
    assert short[t.dlq]["retention_bytes"] == 1048576
    assert (short[commands]["retention_ms"], short[commands]["required_ms"]) == (30 * DAY_MS, -1)

    # Human output: one warning line per topic, after the usual lines.
    human = p.cli("status")
    assert human.exit_code == 0
    warnings = [line for line in human.stdout.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 3, human.stdout
    assert any(f"topic {track} keeps records 7 days" in w for w in warnings)
    assert any(f"topic {t.dlq} " in w and "retention.bytes=1048576" in w for w in warnings)
    assert all("profiles topics --apply-retention" in w for w in warnings)
    assert "dead letters: 0" in human.stdout

    # The worker's start-up check (it prints each as a warning line) sees the same, and
    # changes nothing.
    assert {r.topic for r in asyncio.run(ensure_topics(p.settings))} == set(short)
    assert configs(p, [track])[track]["retention.ms"][0] == str(WEEK_MS)

    listed = {r["topic"]: r for r in p.cli_json("topics")["topics"]}
    assert listed[track]["keeps_less"] and listed[track]["retention_ms"] == WEEK_MS
    assert listed[track]["partitions"] == 4
    assert not listed[t.for_type("page")]["keeps_less"]
    assert listed[t.company_deltas]["required_ms"] is None
    assert "KEEPS LESS" in p.cli("topics").stdout

    # Fixed when asked: what changed is printed, other configs stay.
    fixed = p.cli("topics", "--apply-retention")
    assert fixed.exit_code == 0, fixed.output
    assert f"changed {track}: retention.ms {WEEK_MS} -> {REQUIRED_MS}" in fixed.stdout
    assert f"changed {t.dlq}: retention.bytes 1048576 -> -1" in fixed.stdout
    assert f"changed {commands}: retention.ms {30 * DAY_MS} -> -1" in fixed.stdout
    found = configs(p, [track, t.dlq, commands])
    assert found[track]["retention.ms"][0] == str(REQUIRED_MS)
    assert found[track]["segment.ms"] == ("3600000", 1)  # still the topic's own (dynamic)
    assert found[t.dlq]["retention.ms"][0] == "-1"  # longer than needed: left so
    assert found[t.dlq]["retention.bytes"][0] == "-1"
    assert found[commands]["retention.ms"][0] == "-1"
    assert status_retention(p, lambda r: r == []) == []
    assert "warning" not in p.cli("status").stdout
    again = p.cli_json("topics", "--apply-retention")
    assert again["changed"] == [] and not any(r["keeps_less"] for r in again["topics"])


def test_topics_exit_2_when_kafka_is_unreachable(pipeline: Pipeline) -> None:
    env = {
        **pipeline.env,
        "PROFILES_KAFKA_BOOTSTRAP": "127.0.0.1:1",
        "PYTHONPATH": str(ROOT),  # the code of this tree
    }
    for args in (["topics"], ["topics", "--apply-retention"], ["status", "--json"]):
        run = subprocess.run([PROFILES, *args], env=env, capture_output=True, text=True, timeout=60)
        assert run.returncode == 2, (args, run.stdout, run.stderr)
        assert run.stderr.startswith("profiles: cannot reach a service: kafka"), run.stderr
        assert run.stdout == ""
