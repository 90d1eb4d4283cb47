"""A worker paused (SIGSTOP) in the middle of a batch, past the consumer session timeout, so
its partitions move to the other worker, while users move between companies; then resumed
(SIGCONT): a zombie that finishes its stale batch and may send stale company contributions.
Every company must still count exactly its current members."""

from __future__ import annotations

import array
import asyncio
import ctypes
import fcntl
import os
import random
import signal
import socket
import termios
import threading
import time
import warnings
from typing import Any

import pytest
import redis
import reference as ref
from aiokafka.admin import AIOKafkaAdminClient
from faultdata import assert_exact, dataset

from projections import keys
from streams.kafka import client_options
from streams.publish import publish_records

# one xdist process runs every fault test: they share the private stack and restart it
pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("faults")]


def publish(pipeline: Any, records: list[dict[str, Any]]) -> None:
    """In-process (the publisher's own code): the records arrive within one batch window."""
    report = asyncio.run(publish_records(records, pipeline.settings))
    assert sum(report.sent.values()) == len(records)


async def _group(settings: Any) -> tuple[str, int]:
    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    try:
        [response] = await admin.describe_consumer_groups([settings.group_id])
        _error, _group_id, state, _type, _protocol, members, *_ = response.groups[0]
        return state, len(members)
    finally:
        await admin.close()


def wait_group(pipeline: Any, members: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while asyncio.run(_group(pipeline.settings)) != ("Stable", members):
        assert time.monotonic() < deadline, asyncio.run(_group(pipeline.settings))
        time.sleep(0.2)


PIDFD_GETFD = 438  # the same number on every Linux architecture


def redis_sockets(pid: int, redis_port: int) -> dict[int, socket.socket]:
    """The process's connections to Redis by local port, as copies of its sockets (Linux
    pidfd_getfd: a test may look into its own child), to see what they have not read."""
    libc = ctypes.CDLL(None, use_errno=True)
    pidfd = os.pidfd_open(pid)
    found = {}
    try:
        for name in os.listdir(f"/proc/{pid}/fd"):
            try:
                if not os.readlink(f"/proc/{pid}/fd/{name}").startswith("socket:"):
                    continue
            except OSError:
                continue
            fd = libc.syscall(PIDFD_GETFD, pidfd, int(name), 0)
            assert fd >= 0, f"pidfd_getfd: {os.strerror(ctypes.get_errno())}"
            sock = socket.socket(fileno=fd)
            try:
                ours = sock.family in (socket.AF_INET, socket.AF_INET6)
                ours = ours and sock.getpeername()[1] == redis_port
            except OSError:
                ours = False
            if ours:
                found[sock.getsockname()[1]] = sock
            else:
                sock.close()
    finally:
        os.close(pidfd)
    return found


def unread(sock: socket.socket) -> int:
    """Bytes that arrived on the socket and were not read yet."""
    count = array.array("i", [0])
    fcntl.ioctl(sock.fileno(), termios.FIONREAD, count)
    return count[0]


# How a batch reads its users before folding (single-field HGETs of versions come after
# the write, too late to stop in).
READS = {"HGETALL", "HMGET"}


class Watch(threading.Thread):
    """Reads every command Redis runs (MONITOR) and picks out the worker's commands on user
    projections: it learns which users the worker serves, and once armed stops it (SIGSTOP)
    as it reads a batch of many users — between reading them and writing them, with their
    company contributions computed from what it read, or about to be."""

    def __init__(self, url: str, pid: int, users: dict[str, str], batch: int = 10) -> None:
        super().__init__(daemon=True)
        self.url, self.pid, self.users, self.batch = url, pid, users, batch
        self.loaded: set[str] = set()  # the users the worker read or wrote
        self.armed, self.paused, self.synced = (threading.Event() for _ in range(3))
        self.done = False
        self.lock = threading.Lock()
        self.probe = redis.Redis.from_url(url)
        self.port = self.probe.connection_pool.connection_kwargs["port"]
        self.sockets = redis_sockets(pid, self.port)

    def pause(self) -> bool:
        """Stop the worker (once); False if it was already stopped."""
        with self.lock:
            if self.paused.is_set():
                return False
            os.kill(self.pid, signal.SIGSTOP)
            self.paused.set()
            return True

    def sync(self) -> None:
        """Until the watch has read every command Redis ran before this call."""
        self.synced.clear()
        redis.Redis.from_url(self.url).echo("zombie-watch-sync")
        assert self.synced.wait(timeout=30)

    def run(self) -> None:
        loads = 0
        with redis.Redis.from_url(self.url).monitor() as monitor:
            for cmd in monitor.listen():
                if self.done:
                    return
                name, *args = cmd["command"].split(" ")
                name = name.upper()
                if name == "ECHO" and args == ["zombie-watch-sync"]:
                    self.synced.set()
                user = next((self.users[a] for a in args[:3] if a in self.users), None)
                if user is None or self.paused.is_set():
                    continue
                source = int(cmd["client_port"] or 0)
                if source not in self.sockets:  # a connection opened since
                    self.close()
                    self.sockets = redis_sockets(self.pid, self.port)
                if source not in self.sockets:
                    continue
                self.loaded.add(user)
                loads += self.armed.is_set() and name in READS
                if loads >= self.batch:  # a batch of many users: a long fold to stop in
                    # Once it has taken the whole answer in: stopped before, it would find
                    # its read timed out on waking and read again, no longer stale.
                    deadline = time.monotonic() + 1.0
                    while not self.answered(source) and time.monotonic() < deadline:
                        time.sleep(0.0001)
                    self.pause()

    def answered(self, source: int) -> bool:
        """Redis has sent the connection everything, and the worker has read it all."""
        for c in self.probe.client_list():
            if c["addr"].endswith(f":{source}") and int(c["obl"]) + int(c["oll"]) > 0:
                return False
        return unread(self.sockets[source]) == 0

    def close(self) -> None:
        for sock in self.sockets.values():
            sock.close()  # only the copy: the worker's socket stays open

    def stop(self) -> None:
        self.done = True
        redis.Redis.from_url(self.url).ping()  # wakes the monitor up
        self.join(timeout=10)
        self.close()


def moves(records: list[dict[str, Any]], seed: int) -> list[dict[str, Any]]:
    """For every user with a company (and no operator command): a delete of everything up to
    just after its last identify naming a company, then an identify with another company of
    its app — the old company must lose the user, the new one gain it. With the delete, no
    surviving identify of the user names the old company any more."""
    rng = random.Random(seed)
    companies: dict[str, dict[str, dict[str, Any]]] = {}
    last: dict[tuple[str, str], int] = {}
    commanded = {(r["app_id"], r["user_id"]) for r in records if r["type"] == "command"}
    for r in records:
        if r["type"] == "identify" and r.get("company"):
            companies.setdefault(r["app_id"], {})[r["company"]["id"]] = r["company"]
            who = (r["app_id"], r["user_id"])
            last[who] = max(last.get(who, 0), ref.record_ms(r))
    out = []
    for (app, user), at in sorted(last.items()):
        if (app, user) in commanded:
            continue
        own = {r["company"]["id"] for r in records if r["user_id"] == user and r.get("company")}
        other = rng.choice(sorted(set(companies[app]) - own))
        out.append(
            {
                "type": "command",
                "command": "delete",
                "command_id": f"zombie-delete-{user}",
                "issued_at": at + 1,
                "app_id": app,
                "user_id": user,
            }
        )
        out.append(
            {
                "type": "identify",
                "app_id": app,
                "user_id": user,
                "event_id": f"zombie-move-{user}",
                "timestamp": at + 2,
                "traits": {"name": f"Moved {user}"},
                "company": companies[app][other],
            }
        )
    return out


def test_a_paused_worker_resumed_after_its_partitions_moved(pipeline: Any, stack: Any) -> None:
    records, now_ms = dataset(seed=71)
    moved = moves(records, seed=71)
    assert len(moved) >= 100
    a, b = int(len(records) * 0.6), int(len(records) * 0.7)
    before, probe, rest = records[:a], records[a:b], records[b:]
    ns = pipeline.settings.namespace
    users = {keys.user(ns, r["app_id"], r["user_id"]): r["user_id"] for r in records}

    # Batches gathered over a second: the other worker takes what the zombie held and the
    # moves after it in one batch, so the same user-step version as the zombie's.
    pipeline.env["PROFILES_BATCH_SECONDS"] = "1"
    zombie = pipeline.start_worker()
    pipeline.start_worker()
    publish(pipeline, before)
    pipeline.wait_idle()
    wait_group(pipeline, 2)

    watch = Watch(stack.redis_url, zombie.pid, users)
    watch.start()
    try:
        try:
            # Which users are the zombie's: those it reads while the group is settled.
            publish(pipeline, probe)
            pipeline.wait_idle()
            watch.sync()
            mine = set(watch.loaded)
            assert 20 <= len(mine) <= len(users) - 20, f"the worker served {len(mine)} users"
            # A burst of its users' records only (the other worker idles): it is stopped
            # as it reads a batch of them.
            ours = [r for r in rest if r["user_id"] in mine]
            burst = ours[: len(ours) // 3]
            after = [r for r in rest if r["user_id"] not in mine] + ours[len(ours) // 3 :]
            watch.armed.set()
            publish(pipeline, burst)
            if not watch.paused.wait(timeout=10):
                msg = "the worker read no batch of its users in 10 s: paused at a random moment"
                warnings.warn(msg, stacklevel=1)
            watch.pause()
        finally:
            watch.stop()
        # While it is stopped, users move: the delete takes their old company away.
        publish(pipeline, moved)
        # Past the session timeout, the other worker takes the partitions and applies the
        # burst the zombie holds, together with the moves.
        pipeline.wait_idle()
    finally:
        os.kill(zombie.pid, signal.SIGCONT)  # the zombie finishes its stale batch
    # It may rejoin the group or stop once it learns it was fenced; either is fine.
    pipeline.stopped.add(zombie)
    publish(pipeline, after)
    # Every company counts exactly its current members: the stale contributions of the
    # zombie must not bring a moved user back into its old company.
    assert_exact(pipeline, records + moved, now_ms)
