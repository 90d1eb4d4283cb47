"""The command line as a newcomer meets it (issue 20, item 4): a closed pipe ends it quietly,
and a bad parameter is one line and its own exit code (no service needed)."""

from __future__ import annotations

import os
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
    ("args", "env", "code", "says"),
    [
        (
            ["user", "app", "u", "--from", "2024-13-45"],
            {},
            64,
            "profiles user: bad parameter: Invalid value for '--from': not a day",
        ),
        (["user", "app"], {}, 64, "profiles user: bad parameter: Missing argument 'USER_ID'"),
        (["users", "app", "--limit", "x"], {}, 64, "profiles users: bad parameter: "),
        (["user", "app", "u", "--frm", "2024-01-01"], {}, 64, "No such option: --frm"),
        (["usr", "app", "u"], {}, 64, "profiles: bad parameter: No such command 'usr'"),
        (
            ["sessions", "app", "u", "--from", "2024-05-02", "--to", "2024-05-01"],
            {},
            64,
            "profiles: bad parameter: --from 2024-05-02 is after --to 2024-05-01",
        ),
        (
            ["company", "app", "c", "--from", "2024-05-02", "--to", "2024-05-01"],
            {},
            64,
            "profiles: bad parameter: --from 2024-05-02 is after --to 2024-05-01",
        ),
        (
            ["replay", "--from-beginning", "--since", "2024-01-01"],
            {},
            64,
            "profiles: bad parameter: --from-beginning and --since exclude each other",
        ),
        (
            ["users", "app"],
            {"PROFILES_PARTITIONS": "0"},
            78,
            "profiles: bad setting PROFILES_PARTITIONS: ",
        ),
    ],
)
def test_a_bad_parameter_is_one_line_and_its_own_exit_code(
    args: list[str], env: dict[str, str], code: int, says: str
) -> None:
    """64 for the command line, 78 for a setting (the README's table): never click's usage
    block, and never 2, which says a service could not be reached."""
    done = subprocess.run(
        [PROFILES, *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == code, done.stderr
    assert done.stderr.count("\n") == 1 and says in done.stderr, done.stderr
    assert "Usage:" not in done.stderr and done.stdout == ""


def test_human_output_writes_values_as_people_do(capsys: pytest.CaptureFixture[str]) -> None:
    """true/false and — for nothing, never Python's True/None; the overview says its period
    and what it counts (track events), the sessions what theirs count (every interaction)."""
    from foldkit import fold

    from cli.tables import sessions_table, user_table

    now = 1_795_000_000_000
    records = [
        {
            "type": "identify",
            "app_id": "app",
            "user_id": "u",
            "event_id": "i",
            "timestamp": now - 60_000,
            "traits": {"beta": True, "trial": False, "seats": 3},
        },
        {"type": "track", "app_id": "app", "user_id": "u", "event_id": "t", "timestamp": now,
         "name": "Go"},
        {"type": "page", "app_id": "app", "user_id": "u", "event_id": "p", "timestamp": now,
         "url": "https://x.example/a", "name": "A"},
    ]  # fmt: skip
    reader = fold(records, now_ms=now)
    user_table(reader.user("app", "u"))
    sessions_table(reader.sessions("app", "u"))
    out = capsys.readouterr().out
    assert "True" not in out and "False" not in out and "None" not in out, out
    assert "beta   true" in out and "trial  false" in out and "seats  3" in out, out
    assert any(line.split() == ["email", "—"] for line in out.splitlines()), out
    assert "overview, all time: 1 track events, 1 sessions" in out, out
    assert "2 interactions (track, page, feedback, content)" in out, out


def test_the_rates_of_status_are_what_moved_over_the_window() -> None:
    from aiokafka import TopicPartition

    from streams.status import rates_between

    a, b = TopicPartition("p.track", 0), TopicPartition("p.page", 3)
    begins = {a: 100, b: 0}
    then = ({a: 500, b: 40}, {b: 10})  # a: nothing committed yet, at its beginning
    now = ({a: 900, b: 40}, {a: 300, b: 40})
    assert rates_between([a, b], begins, then, now, 2.0) == {
        "rate": (200 + 30) / 2.0,
        "incoming": 400 / 2.0,
        "window_seconds": 2.0,
    }
