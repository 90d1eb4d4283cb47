"""scripts/services runs a real local Redis Cluster (issue 9): `up --redis-cluster N` creates it
once, a second `up` is a no-op, a killed node is restarted from its nodes.conf (no re-create),
and `down --purge` removes it. Private services dir and cluster ports; the shared Kafka and
Redis (the `services` fixture) are only seen answering, so `up` leaves them alone."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any, cast

import pytest
import redis
from pipelinekit import ROOT, port_free
from redis.cluster import RedisCluster

pytestmark = pytest.mark.integration

SERVICES = str(ROOT / "scripts" / "services")
MASTERS = 3
SLOTS = 16384


def _free_cluster_port() -> int:
    """A first node port with MASTERS free ports from it, and their cluster bus ports (+10000)."""
    for base in range(41000, 45000, 10):
        if all(port_free(p) and port_free(p + 10000) for p in range(base, base + MASTERS)):
            return base
    raise RuntimeError("no free ports for a private Redis Cluster")


def _services(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SERVICES, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=180
    )


def _line(out: str, prefix: str) -> str:
    return next(x for x in out.splitlines() if x.startswith(f"services: {prefix}"))


def _pid(root: Path, port: int) -> int:
    return int((root / "redis-cluster" / f"node-{port}" / "redis.pid").read_text().strip())


def _gone(pid: int) -> bool:
    """Exited (a zombie that init has not reaped yet counts)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return True
    return any(x.startswith("State:") and "Z" in x for x in status.splitlines())


def _node(port: int) -> redis.Redis:
    return redis.Redis(host="127.0.0.1", port=port, socket_timeout=5)


def _cluster_info(port: int) -> dict[str, str]:
    return cast(dict[str, str], _node(port).execute_command("CLUSTER INFO"))


def test_up_creates_a_cluster_keeps_it_and_restarts_a_killed_node(
    services: None, tmp_path: Path
) -> None:
    base = _free_cluster_port()
    ports = list(range(base, base + MASTERS))
    root = tmp_path / "services"
    env = {
        **os.environ,
        "PROFILES_SERVICES_DIR": str(root),
        "PROFILES_REDIS_CLUSTER_PORT": str(base),
    }
    pids: list[int] = []
    try:
        first = _services(env, "up", "--redis-cluster", str(MASTERS))
        assert first.returncode == 0, first.stdout + first.stderr
        assert "creating the cluster" in first.stdout
        for service in ("redis", "kafka"):  # the shared ones: not ours, left alone
            assert "leaving it alone" in _line(first.stdout, f"{service}:")
        for port in ports:
            info = _cluster_info(port)
            assert info["cluster_state"] == "ok", (port, info)
            assert int(info["cluster_slots_assigned"]) == SLOTS, (port, info)
            assert (root / "redis-cluster" / f"node-{port}" / "nodes.conf").is_file()
        ids = {port: _node(port).execute_command("CLUSTER MYID") for port in ports}

        client = RedisCluster(host="127.0.0.1", port=base)
        masters = client.get_primaries()
        assert sorted(n.port for n in masters) == ports
        assert client.get_replicas() == []
        covered: set[int] = set()
        slots = cast(dict[tuple[int, int], dict[str, Any]], client.cluster_slots())
        for (start, end), shard in slots.items():
            assert shard["primary"][1] in ports
            covered.update(range(start, end + 1))
        assert covered == set(range(SLOTS))
        keys = [f"k{i}" for i in range(30)]
        for key in keys:
            client.set(key, key.upper())
        assert len({client.keyslot(k) for k in keys}) == len(keys)
        assert [client.get(k) for k in keys] == [k.upper().encode() for k in keys]
        client.close()
        pids = [_pid(root, port) for port in ports]

        t0 = time.monotonic()
        again = _services(env, "up", "--redis-cluster", str(MASTERS))
        took = time.monotonic() - t0
        assert again.returncode == 0, again.stdout + again.stderr
        assert "nothing to do" in _line(again.stdout, "redis-cluster:"), again.stdout
        assert took < 10, took
        assert [_pid(root, port) for port in ports] == pids

        os.kill(pids[1], signal.SIGKILL)
        deadline = time.monotonic() + 30
        while not _gone(pids[1]):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        restart = _services(env, "cluster", "up", str(MASTERS))
        assert restart.returncode == 0, restart.stdout + restart.stderr
        assert f"restarting node(s) {ports[1]} from their nodes.conf" in restart.stdout
        assert "creating" not in restart.stdout
        pids[1] = _pid(root, ports[1])
        for port in ports:
            info = _cluster_info(port)
            assert info["cluster_state"] == "ok" and int(info["cluster_slots_assigned"]) == SLOTS
            assert _node(port).execute_command("CLUSTER MYID") == ids[port]  # the same cluster

        status = _services(env, "status")
        assert status.returncode == 0, status.stderr
        for port in ports:
            assert "running (pid" in _line(status.stdout, f"redis-cluster node {port}:")
        assert "cluster_state:ok" in _line(status.stdout, "redis-cluster: cluster_state")

        other = _services(env, "cluster", "up", str(MASTERS + 1))  # another layout: refused
        assert other.returncode == 1 and "cluster down --purge" in other.stderr
    finally:
        down = _services(env, "down", "--purge")
    assert down.returncode == 0, down.stdout + down.stderr
    for service in ("redis", "kafka"):  # the shared ones are not ours to stop
        assert "nothing to stop" in _line(down.stdout, f"{service}:")
    assert all(_gone(pid) for pid in pids)
    assert not list((root / "redis-cluster").glob("node-*/nodes.conf"))
    assert not (root / "redis-cluster" / "cluster.info").exists()
