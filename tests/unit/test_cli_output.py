"""The command line as a newcomer meets it (issue 20, item 4): a closed pipe ends it quietly,
and a period whose --from is after its --to is one line and exit 2 (no service needed)."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

PROFILES = str(Path(sys.executable).with_name("profiles"))


def test_a_closed_pipe_ends_the_command_quietly_as_unix_tools_do() -> None:
    """`profiles generate | head -c 100`: no traceback and no message, death by SIGPIPE (the
    shell's 141), not exit 1, which says the command failed."""
    proc = subprocess.Popen(
        [PROFILES, "generate", "--users", "300"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdout is not None and proc.stderr is not None
    assert len(proc.stdout.read(100)) == 100
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait(timeout=60) == -signal.SIGPIPE
    assert err == b""


@pytest.mark.parametrize(
    "command",
    [
        ["user", "app", "u"],
        ["sessions", "app", "u"],
        ["sentiment", "app", "u"],
        ["company", "app", "c"],
    ],
)
def test_a_reversed_period_is_one_line_and_exit_2(command: list[str]) -> None:
    done = subprocess.run(
        [PROFILES, *command, "--from", "2024-05-02", "--to", "2024-05-01"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr == "profiles: bad parameter: --from 2024-05-02 is after --to 2024-05-01\n"
    assert done.stdout == ""
