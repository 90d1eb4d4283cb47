"""`profiles publish` is an SDK's publisher (issue 21, item 2): it refuses `command` records,
which are an operator's, unless asked with --commands."""

from __future__ import annotations

import json
import time

from streams.publish import COMMAND_REFUSED, check_lines
from streams.settings import Settings

NOW = int(time.time() * 1000)
TRACK = {"type": "track", "app_id": "a", "user_id": "u", "event_id": "e", "timestamp": NOW,
         "name": "Go"}  # fmt: skip
COMMAND = {"type": "command", "app_id": "a", "user_id": "u", "command_id": "c", "issued_at": NOW,
           "command": "delete"}  # fmt: skip


def test_commands_are_refused_unless_asked_for() -> None:
    lines = [json.dumps(TRACK), json.dumps(COMMAND)]
    good, report = check_lines(lines, Settings())
    assert good == [TRACK]
    assert report.rejected == [(2, COMMAND_REFUSED)]
    assert COMMAND_REFUSED.startswith("command_refused: ") and "--commands" in COMMAND_REFUSED
    good, report = check_lines(lines, Settings(), commands=True)
    assert good == [TRACK, COMMAND] and report.rejected == []
