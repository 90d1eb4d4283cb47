"""`make demo` as a newcomer meets it (issue 20, item 1): after it, the hint it ends with and
the README's commands find its profiles in a new shell, with no setting exported."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("demo")]
ROOT = Path(__file__).resolve().parents[2]


def new_shell() -> dict[str, str]:
    """The environment of a new shell: none of the PROFILES_* settings of this test run."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("PROFILES_", "DEMO_"))}


def test_after_the_demo_its_hint_and_the_readme_commands_work_in_a_new_shell() -> None:
    demo = subprocess.run(
        ["scripts/demo"],
        cwd=ROOT,
        env={**new_shell(), "DEMO_SERVE": "0", "DEMO_USERS": "40"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    hint = re.search(r"e\.g\. (\S+) user (\S+) (\S+) --json$", demo.stdout, re.MULTILINE)
    assert hint, demo.stdout[-2000:]
    command, app, user = hint.groups()

    def shell(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [command, *args], cwd=ROOT, env=new_shell(), capture_output=True, text=True, timeout=120
        )

    profile = shell("user", app, user, "--json")
    assert profile.returncode == 0, profile.stderr
    assert json.loads(profile.stdout)["user_id"] == user
    status = shell("status", "--window", "0", "--json")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["groups"][0]["processed"] > 0
    listed = shell("users", app, "--limit", "5")
    assert listed.returncode == 0 and user in shell("users", app, "--limit", "1000").stdout
