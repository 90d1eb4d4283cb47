"""Redis at maxmemory for a few seconds (noeviction: every write refused with OOM) while
records arrive: nothing the worker could not write may be acked, and once Redis has room
again every view equals the batch computation, with the worker alive all along."""

from __future__ import annotations

import time
from typing import Any

import pytest
import redis
from faultdata import assert_exact, dataset

# one xdist process runs every fault test: they share the private stack and restart it
pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("faults")]

FULL_FOR = 8.0  # seconds Redis refuses every write


def test_records_arriving_while_redis_is_full_are_not_lost(pipeline: Any, stack: Any) -> None:
    records, now_ms = dataset(seed=53)
    third = -(-len(records) // 3)
    parts = [records[i * third : (i + 1) * third] for i in range(3)]
    worker = pipeline.start_worker()
    published = pipeline.publish_file(parts[0])
    assert published.returncode == 0, published.stderr
    pipeline.wait_idle()

    client = redis.Redis.from_url(stack.redis_url)
    policy = client.config_get("maxmemory-policy")["maxmemory-policy"]
    try:
        client.config_set("maxmemory-policy", "noeviction")
        # below what it holds, so it stays full when the memory of a client's buffers is freed
        client.config_set("maxmemory", client.info("memory")["used_memory"] // 2)
        with pytest.raises(redis.exceptions.OutOfMemoryError):
            client.set("redis-full-probe", b"x" * 1024)
        published = pipeline.publish_file(parts[1])
        assert published.returncode == 0, published.stderr
        time.sleep(FULL_FOR)  # the worker meets the full Redis with every batch meanwhile
        with pytest.raises(redis.exceptions.OutOfMemoryError):
            client.set("redis-full-probe", b"x" * 1024)  # it stayed full the whole time
    finally:
        client.config_set("maxmemory", 0)
        client.config_set("maxmemory-policy", policy)
        client.delete("redis-full-probe")
    assert worker.poll() is None, "the worker died on a full Redis"

    published = pipeline.publish_file(parts[2])
    assert published.returncode == 0, published.stderr
    assert_exact(pipeline, records, now_ms)
    assert worker.poll() is None
