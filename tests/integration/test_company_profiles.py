"""Companies, operator commands and exports end to end on real Kafka and Redis."""

from __future__ import annotations

import csv
import io
import json
import time
from typing import Any

import pytest
from compare import compare_companies, compare_users

from schemas.generate import generate

pytestmark = pytest.mark.integration


def dataset(seed: int) -> tuple[list[dict[str, Any]], int]:
    end_ms = int(time.time() * 1000)
    records = generate(
        users=220, days=21, end_ms=end_ms, seed=seed, commands=True, duplicates=0.05, shuffle=True
    )
    kinds = {r["command"] for r in records if r["type"] == "command"}
    assert kinds == {"exclude", "include", "reset_content", "delete"}
    return records, end_ms


def biggest_company(records: list[dict[str, Any]]) -> tuple[str, str]:
    """(app, company) of the company with the most identifies."""
    counts: dict[tuple[str, str], list[str]] = {}
    for r in records:
        if r["type"] == "identify" and r.get("company"):
            counts.setdefault((r["app_id"], r["company"]["id"]), []).append(r["user_id"])
    (app, company), _members = max(counts.items(), key=lambda kv: len(kv[1]))
    return app, company


def test_companies_commands_and_exports_equal_the_batch_computation(pipeline: Any) -> None:
    records, now_ms = dataset(seed=5)
    pipeline.start_worker()
    assert pipeline.publish_file(records).returncode == 0
    pipeline.wait_idle()
    assert compare_users(pipeline, records, now_ms) >= 200
    assert compare_companies(pipeline, records, now_ms) >= 20

    # An operator excludes a member through the CLI: the company stops counting it.
    app, company = biggest_company(records)
    before = pipeline.cli_json("company", app, company)
    member = next(
        u["user_id"]
        for u in pipeline.cli_json("company-users", app, company)
        if not u["excluded"] and u["total_sessions"] > 0
    )
    at = int(time.time() * 1000)
    done = pipeline.cli("command", "exclude", app, member, "--at", str(at), "--reason", "tester")
    assert done.exit_code == 0, done.output
    command_id = done.stdout.rsplit("(", 1)[1].strip(" )\n")
    records.append(
        {
            "type": "command",
            "command": "exclude",
            "command_id": command_id,
            "issued_at": at,
            "app_id": app,
            "user_id": member,
        }
    )
    pipeline.wait_idle()
    assert pipeline.cli_json("user", app, member)["excluded"] is True
    after = pipeline.cli_json("company", app, company)
    assert after["users_count"] == before["users_count"] - 1
    assert after["total_sessions"] < before["total_sessions"]
    compare_companies(pipeline, records, now_ms)

    # Exports parse with the standard library and hold every user exactly once.
    apps = sorted({r["app_id"] for r in records})
    exported_json, exported_csv = [], []
    for a in apps:
        lines = pipeline.cli("export", "users", a, "--format", "jsonl").stdout.splitlines()
        exported_json += [(a, json.loads(line)["user_id"]) for line in lines]
        rows = list(
            csv.DictReader(
                io.StringIO(pipeline.cli("export", "users", a, "--format", "csv").stdout)
            )
        )
        exported_csv += [(a, row["user_id"]) for row in rows]
    existing = {
        (a, u["user_id"])
        for a in apps
        for u in pipeline.cli_json("users", a, "--limit", "10000")["users"]
    }
    assert len(exported_json) == len(set(exported_json)) == len(existing)
    assert set(exported_json) == set(exported_csv) == existing
    one = json.loads(pipeline.cli("export", "user", app, member, "--format", "json").stdout)
    assert one["profile"] == pipeline.cli_json("user", app, member)
    assert one["sessions"] == pipeline.cli_json("sessions", app, member)
    rows = list(
        csv.reader(
            io.StringIO(pipeline.cli("export", "user", app, member, "--format", "csv").stdout)
        )
    )
    assert rows[0] == ["section", "item", "field", "value"]
    assert ["profile", "", "user_id", member] in rows

    # A resumed export continues after its cursor without repeating or skipping anyone.
    first = pipeline.cli("export", "users", app, "--format", "jsonl").stdout.splitlines()
    cut = len(first) // 2
    cursor = "0:" + json.loads(first[cut - 1])["user_id"].encode().hex()
    rest = pipeline.cli("export", "users", app, "--format", "jsonl", "--cursor", cursor)
    assert first[cut:] == rest.stdout.splitlines()
