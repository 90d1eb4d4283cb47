"""A worker runs from any directory (an installed wheel has no checkout): its Faust state
folder defaults to $XDG_STATE_HOME/profile-streams/faust, and one it cannot create is one
line and exit 2, never a traceback (issue 20, item 9)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from pipelinekit import PROFILES

from schemas.generate import generate

pytestmark = pytest.mark.integration


def test_a_worker_started_outside_the_checkout_keeps_its_state_under_the_default(
    pipeline: Any, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    del pipeline.env["PROFILES_DATADIR"]
    pipeline.env["XDG_STATE_HOME"] = str(state)
    records = generate(users=3, days=2, end_ms=int(time.time() * 1000), seed=3)
    worker = pipeline.start_worker()  # its working directory is tmp_path: no .services there
    published = pipeline.publish_file(records)
    assert published.returncode == 0, published.stderr
    status = pipeline.wait_idle()
    assert status["groups"][0]["processed"] == len(records)
    assert worker.poll() is None
    assert (state / "profile-streams" / "faust").is_dir()
    assert not (tmp_path / ".services").exists()
    user = next(r for r in records if r["type"] != "command")
    assert pipeline.cli("user", user["app_id"], user["user_id"]).exit_code == 0


def test_a_state_folder_it_cannot_create_is_one_line_and_exit_2(
    pipeline: Any, tmp_path: Path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    env = {**pipeline.env, "PROFILES_DATADIR": str(blocker / "faust")}
    done = subprocess.run(
        [PROFILES, "worker"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1, done.stderr
    assert "PROFILES_DATADIR" in done.stderr and "Traceback" not in done.stderr
