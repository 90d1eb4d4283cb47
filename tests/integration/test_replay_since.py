"""`profiles replay --since S` (issue 17, point 6): the new views hold the events at or after
S in event time and every command whatever its age — a delete issued before S keeps erasing
the records it erased, also those produced after it — and the live worker keeps the floor
after the flip."""

from __future__ import annotations

import subprocess
import time
from typing import Any

import pytest
import reference as ref
from compare import compare_companies, compare_users
from pipelinekit import PROFILES

from schemas.generate import generate

pytestmark = pytest.mark.integration

HOUR = 3_600_000
DAY = 24 * HOUR


def _event(user: str, eid: str, at: int, **more: Any) -> dict[str, Any]:
    return {"app_id": "acme-app", "user_id": user, "event_id": eid, "timestamp": at, **more}


def _track(user: str, eid: str, at: int) -> dict[str, Any]:
    return _event(user, eid, at, type="track", name="Report Created")


def _command(user: str, cid: str, command: str, at: int) -> dict[str, Any]:
    return {"type": "command", "app_id": "acme-app", "user_id": user, "command": command,
            "command_id": cid, "issued_at": at}  # fmt: skip


def test_replay_since_keeps_every_command_and_the_floor(pipeline: Any) -> None:
    end_ms = int(time.time() * 1000)
    since = end_ms - 4 * DAY
    records = generate(users=40, days=10, end_ms=end_ms, seed=77, commands=True, shuffle=True)
    records = [r for r in records if r["app_id"] == "acme-app"]
    company = {"id": "since-co", "name": "Since Co"}
    erased = [
        _event("x-deleted", "x-id", since + HOUR, type="identify", traits={}, company=company),
        _track("x-deleted", "x-1", since + 2 * HOUR),
        _command("x-deleted", "x-del", "delete", since + 3 * HOUR),
        # a user excluded 401 days ago: older than the retention, still counts
        _event("y-excluded", "y-id", since + HOUR, type="identify", traits={}, company=company),
        _track("y-excluded", "y-1", since + 2 * HOUR),
        _command("y-excluded", "y-exc", "exclude", end_ms - 401 * DAY),
    ]
    first = records + erased
    pipeline.start_worker()
    assert pipeline.publish_file(first).returncode == 0
    pipeline.wait_idle()
    # produced after the delete: one record it erases (event time before it), one it does not
    late = [_track("x-deleted", "x-2", since + 2 * HOUR + 1), _track("x-deleted", "x-3", end_ms)]
    assert pipeline.publish_file(late).returncode == 0
    pipeline.wait_idle()

    done = subprocess.run(
        [PROFILES, "replay", "--since", str(since), "--json"],
        env=pipeline.env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    # after the flip the live worker keeps the floor: an event before it does not count
    below = [_track("z-late", "z-1", since - HOUR), _track("x-deleted", "x-4", since - 1)]
    assert pipeline.publish_file(below).returncode == 0
    pipeline.wait_idle()

    every = first + late + below
    kept = [r for r in every if r["type"] == "command" or ref.record_ms(r) >= since]
    assert compare_users(pipeline, kept, end_ms) >= 20
    assert compare_companies(pipeline, kept, end_ms) >= 2
    x = pipeline.cli_json("user", "acme-app", "x-deleted")
    assert (x["overview"]["total_events"], x["company_id"]) == (1, None)
    assert pipeline.cli_json("user", "acme-app", "y-excluded")["excluded"] is True
    assert pipeline.cli_json("user", "acme-app", "z-late") == ("exit", 3)
    assert pipeline.cli_json("company-users", "acme-app", "since-co") == [
        {"user_id": "y-excluded", "name": None, "email": None, "excluded": True,
         "last_seen_at": pipeline.cli_json("user", "acme-app", "y-excluded")["last_seen_at"],
         "total_sessions": 1}
    ]  # fmt: skip
