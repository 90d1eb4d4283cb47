"""The ingestion API's rate limit (a token bucket of records per write key) and its keys, on a
clock of the test's."""

import pytest

from explorer.ingest import Buckets, WriteKeys
from explorer.tokens import Tokens


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_holds_a_burst_refills_at_the_rate_and_says_when_to_retry() -> None:
    clock = Clock()
    buckets = Buckets(rate=10, burst=50, clock=clock)
    assert buckets.take("a", 50) == 0  # a full bucket to start with
    assert buckets.take("a", 1) == 1  # empty: one record comes back in 0.1 s, said as 1 s
    assert buckets.take("b", 50) == 0  # each key its own
    clock.now += 2.0
    assert buckets.take("a", 30) == 1  # 20 back: 10 more in 1 s
    assert buckets.take("a", 20) == 0
    clock.now += 3.5
    assert buckets.take("a", 36) == 1  # 35 back, a refused take takes nothing
    assert buckets.take("a", 35) == 0
    clock.now += 3600
    assert buckets.take("a", 50) == 0  # never more than the burst
    assert buckets.take("a", 1) == 1


def test_a_slow_rate_says_whole_seconds() -> None:
    clock = Clock()
    buckets = Buckets(rate=0.1, burst=3, clock=clock)
    assert buckets.take("a", 3) == 0
    assert buckets.take("a", 2) == 20
    clock.now += 5.0
    assert buckets.take("a", 1) == 5  # half a record back


def test_write_keys_write_one_app_and_are_never_read_tokens() -> None:
    keys = WriteKeys(
        "acme-app=acme-write-key-0123, globex.web=globex-write-key-01,acme-app=acme-next-key-01234"
    )
    assert keys.app("acme-write-key-0123") == "acme-app"
    assert keys.app("acme-next-key-01234") == "acme-app"  # two keys while one is rotated out
    assert keys.app("globex-write-key-01") == "globex.web"
    assert keys.app("acme-write-key-012") is None
    assert keys.apps() == ["acme-app", "globex.web"]
    assert keys.also_read_tokens(Tokens("*=some-read-token-0123")) == []
    assert keys.also_read_tokens(Tokens("x=globex-write-key-01")) == ["globex.web"]
    for spec, says in (
        ("", "names no key"),
        ("acme-app", "APP=KEY"),
        ("*=acme-write-key-0123", "one app"),
        ("acme app=acme-write-key-0123", "not an app id"),
        ("acme-app=short", "shorter than"),
        ("a=acme-write-key-0123,b=acme-write-key-0123", "another app's too"),
    ):
        with pytest.raises(ValueError, match=says):
            WriteKeys(spec)
