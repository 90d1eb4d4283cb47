"""Deletion outruns merges (docs/design.md §7): delete a known user whose anonymous history was
merged into it, unmerge the anonymous id afterwards, replay, purge — and none of the erased
records is anywhere: not in the projections, not in an export, not in the log."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from typing import Any

import msgpack
import pytest
from pipelinekit import PROFILES

from replay.dlq import read_topic
from streams.topics import Topics

pytestmark = pytest.mark.integration

APP = "merge-app"
ANON, KNOWN, OTHER = "anon-7f3a", "u-ada", "u-bob"


def records(base: int) -> list[dict[str, Any]]:
    def track(user: str, i: int, at: int) -> dict[str, Any]:
        return {
            "type": "track",
            "app_id": APP,
            "user_id": user,
            "event_id": f"{user}-{i}",
            "timestamp": at,
            "name": "Viewed Pricing",
            "context": {"page_url": "https://app.example.com/pricing", "browser": "Firefox"},
        }

    return [
        *(track(ANON, i, base + i * 60_000) for i in range(3)),
        {
            "type": "identify",
            "app_id": APP,
            "user_id": KNOWN,
            "event_id": "ada-id",
            "timestamp": base + 6 * 60_000,
            "traits": {"name": "Ada", "email": "ada@example.com"},
        },
        *(track(KNOWN, i, base + (7 + i) * 60_000) for i in range(2)),
        track(OTHER, 0, base + 60_000),
        # the alias arrives last, long after the records it joins
        {
            "type": "alias",
            "app_id": APP,
            "user_id": KNOWN,
            "previous_id": ANON,
            "event_id": "alias-1",
            "timestamp": base + 5 * 60_000,
        },
    ]


def run(pipeline: Any, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PROFILES, *args], env=pipeline.env, capture_output=True, text=True, timeout=300
    )


def erased_ids(pipeline: Any) -> set[str]:
    """The users whose profile the CLI cannot find (exit 3)."""
    return {u for u in (ANON, KNOWN) if pipeline.cli("user", APP, u).exit_code == 3}


def test_a_delete_erases_the_merged_history_through_unmerge_replay_and_purge(
    pipeline: Any,
) -> None:
    base = int(time.time() * 1000) - 3_600_000
    data = records(base)
    pipeline.start_worker()
    assert pipeline.publish_file(data).returncode == 0
    pipeline.wait_idle()
    known = pipeline.cli_json("user", APP, KNOWN)
    assert known["merged_ids"] == [ANON]
    assert known["overview"]["total_events"] == 5  # its 2 tracks and the anonymous 3
    assert pipeline.cli("user", APP, ANON).exit_code == 3

    assert run(pipeline, "command", "delete", APP, KNOWN).returncode == 0
    pipeline.wait_idle()
    assert run(pipeline, "command", "unmerge", APP, ANON).returncode == 0
    pipeline.wait_idle()
    # the unmerge brings nothing back: the delete reached the anonymous id too
    assert erased_ids(pipeline) == {ANON, KNOWN}
    exported = run(pipeline, "export", "users", APP)
    assert exported.returncode == 0
    assert {json.loads(line)["user_id"] for line in exported.stdout.splitlines()} == {OTHER}

    assert run(pipeline, "replay").returncode == 0
    assert erased_ids(pipeline) == {ANON, KNOWN}
    assert pipeline.cli_json("user", APP, OTHER)["overview"]["total_events"] == 1

    purged = run(pipeline, "purge", APP, KNOWN, "--json")
    assert purged.returncode == 0, purged.stderr
    summary = json.loads(purged.stdout)
    assert set(summary["users"]) == {KNOWN, ANON}  # the merged id goes with the one named
    topics = Topics(pipeline.settings.topic_prefix)
    left = []
    for topic in [*topics.sources, topics.dlq, topics.merges, topics.identity]:
        for r in asyncio.run(read_topic(pipeline.settings, topic)):
            obj = (
                msgpack.unpackb(r.value, raw=False) if r.value[:1] != b"{" else json.loads(r.value)
            )
            if obj.get("type") in ("alias",) or obj.get("command") in ("delete", "unmerge"):
                continue  # links and deletes stay
            names = json.dumps(obj, default=str)
            if ANON in names or KNOWN in names or "ada@example.com" in names:
                left.append((topic, obj))
    assert not left, left[:3]
    assert erased_ids(pipeline) == {ANON, KNOWN}
