"""The generated Kafka ACL roles: what each allows, judged the way Kafka's authorizer judges
(a LITERAL pattern names one resource, a PREFIXED one every name that starts with it; READ,
WRITE, DELETE and ALTER imply DESCRIBE), and the kafka-acls.sh lines that spell them.
tests/integration/test_kafka_acl.py checks the roles on a real broker."""

from __future__ import annotations

import shlex

import pytest
from hypothesis import given
from hypothesis import strategies as st

from replay.flip import replay_group
from streams.kafka_acl import ROLES, Binding, bindings, kafka_acls_lines, principal
from streams.settings import Settings
from streams.topics import Topics

SETTINGS = Settings(topic_prefix="profiles.", group_id="profiles-worker")
TOPICS = Topics("profiles.")
EVENTS = [TOPICS.for_type(t) for t in ("identify", "track", "page", "feedback", "content")]
COMMANDS = TOPICS.for_type("command")
ALL_TOPICS = [
    *TOPICS.sources,
    TOPICS.dlq,
    TOPICS.company_deltas,
    TOPICS.segments,
    TOPICS.dlq_redriven,
    TOPICS.purge_staging,
    "profiles-worker-__assignor-__leader",
    "other.track",
    "profiles.trackx",
    "profiles",
]
GROUPS = [
    "profiles-worker",
    "profiles-worker-replay-ps-1",
    "profiles-worker-verify-ps-verify-0a1b2c3d",
    "profiles-worker2",
    "profiles-worker-other",
    "profiles-workerx-replay-ps-1",
    "other",
]
IMPLIES_DESCRIBE = {"READ", "WRITE", "DELETE", "ALTER", "DESCRIBE"}


def allows(found: list[Binding], resource_type: str, name: str, operation: str) -> bool:
    for b in found:
        if b.resource_type != resource_type or b.permission != "ALLOW" or b.host != "*":
            continue
        if b.pattern_type == "LITERAL" and b.resource_name != name:
            continue
        if b.pattern_type == "PREFIXED" and not name.startswith(b.resource_name):
            continue
        if b.operation == operation:
            return True
        if operation == "DESCRIBE" and b.operation in IMPLIES_DESCRIBE:
            return True
        if operation == "DESCRIBE_CONFIGS" and b.operation == "ALTER_CONFIGS":
            return True
    return False


def topics_with(found: list[Binding], operation: str) -> set[str]:
    return {t for t in ALL_TOPICS if allows(found, "TOPIC", t, operation)}


def groups_with(found: list[Binding], operation: str) -> set[str]:
    return {g for g in GROUPS if allows(found, "GROUP", g, operation)}


def test_the_sdk_writes_the_five_event_topics_only_and_reads_nothing() -> None:
    sdk = bindings("sdk", "User:profiles-sdk", SETTINGS)
    assert topics_with(sdk, "WRITE") == set(EVENTS)
    assert topics_with(sdk, "READ") == set()
    assert topics_with(sdk, "CREATE") == set()
    assert groups_with(sdk, "READ") == groups_with(sdk, "DESCRIBE") == set()
    # `profiles publish` lists the topics it ensures: it may see them, never their records
    ensured = {*TOPICS.sources, TOPICS.dlq, TOPICS.company_deltas, TOPICS.segments}
    assert topics_with(sdk, "DESCRIBE") == ensured
    assert not [b for b in sdk if b.resource_type not in ("TOPIC",)]


def test_the_operator_writes_commands_only_and_watches_the_worker_group() -> None:
    operator = bindings("operator", "profiles-operator", SETTINGS)
    assert topics_with(operator, "WRITE") == {COMMANDS}
    assert topics_with(operator, "READ") == set()
    assert topics_with(operator, "CREATE") == set()
    assert groups_with(operator, "DESCRIBE") == {"profiles-worker"}
    assert groups_with(operator, "READ") == set()  # cannot join the group nor move its offsets
    assert topics_with(operator, "DESCRIBE") == set(ALL_TOPICS[:11])


def test_the_worker_reads_its_sources_and_writes_only_what_it_produces() -> None:
    worker = bindings("worker", "User:profiles-worker", SETTINGS)
    leader = "profiles-worker-__assignor-__leader"
    assert topics_with(worker, "READ") == {
        *TOPICS.sources,
        TOPICS.company_deltas,
        TOPICS.segments,
        leader,
    }
    assert topics_with(worker, "WRITE") == {TOPICS.company_deltas, TOPICS.dlq}
    assert topics_with(worker, "CREATE") == {
        *TOPICS.sources,
        TOPICS.dlq,
        TOPICS.company_deltas,
        TOPICS.segments,
        leader,
    }
    assert groups_with(worker, "READ") == {
        "profiles-worker",
        "profiles-worker-replay-ps-1",
        "profiles-worker-verify-ps-verify-0a1b2c3d",
    }
    assert not [b for b in worker if b.resource_type == "CLUSTER"]


def test_the_replay_groups_and_faust_leader_topic_are_those_the_code_uses() -> None:
    from streams.app import app_options
    from streams.faust_light import App

    worker = bindings("worker", "User:w", SETTINGS)
    assert allows(worker, "GROUP", replay_group(SETTINGS, "ps-12"), "READ")
    app = App(SETTINGS.group_id, **app_options(SETTINGS))
    assert allows(worker, "TOPIC", app._leader_assignor._leader_topic_name, "READ")


prefixes = st.from_regex(r"[A-Za-z0-9._-]{0,12}", fullmatch=True)
groups = st.from_regex(r"[A-Za-z0-9._-]{1,12}", fullmatch=True)


@given(prefix=prefixes, group=groups, other_group=groups)
def test_every_topic_is_named_in_full_and_every_group_is_the_pipelines(
    prefix: str, group: str, other_group: str
) -> None:
    """So no role reaches the topics of another prefix (unless one is named like one of
    ours), nor a group but the worker's and its replays' and verifies'."""
    ours = Settings(topic_prefix=prefix, group_id=group)
    leader = f"{group}-__assignor-__leader"
    mine = (group, f"{group}-replay-", f"{group}-verify-")
    for role in ROLES:
        found = bindings(role, "User:x", ours)
        for b in found:
            if b.resource_type == "TOPIC":
                assert b.pattern_type == "LITERAL"
                assert b.resource_name.startswith(prefix) or b.resource_name == leader
        reaches = allows(found, "GROUP", other_group, "DESCRIBE")
        assert not reaches or other_group == group or other_group.startswith(mine[1:]), role


def parse(line: str) -> list[Binding]:
    """The bindings a kafka-acls.sh --add line creates."""
    words = shlex.split(line)
    assert words[:2] == ["kafka-acls.sh", "--bootstrap-server"] and words[3] == "--add"
    options: dict[str, list[str]] = {}
    for flag, value in zip(words[4::2], words[5::2], strict=True):
        options.setdefault(flag, []).append(value)
    [who] = options["--allow-principal"]
    resource, [name] = next((k, v) for k, v in options.items() if k in ("--topic", "--group"))
    pattern = options.get("--resource-pattern-type", ["literal"])[0].upper()
    return [
        Binding(
            resource[2:].upper(),
            name,
            pattern,
            "".join("_" + c if c.isupper() else c for c in op).lstrip("_").upper(),
            who,
        )
        for op in options["--operation"]
    ]


@pytest.mark.parametrize("role", ROLES)
def test_the_kafka_acls_lines_spell_exactly_the_bindings(role: str) -> None:
    found = bindings(role, "User:profiles-x", SETTINGS)
    lines = kafka_acls_lines(found, "127.0.0.1:9092")
    parsed = [b for line in lines for b in parse(line)]
    assert sorted(parsed, key=str) == sorted(found, key=str)
    assert len(lines) == len({(b.resource_type, b.resource_name) for b in found})


def test_a_principal_is_a_user_and_never_the_anonymous_one() -> None:
    assert principal("profiles-sdk") == "User:profiles-sdk"
    assert principal("User:CN=sdk,O=acme") == "User:CN=sdk,O=acme"
    for bad in ("", "User:", "User:ANONYMOUS", "ANONYMOUS", "a\nb"):
        with pytest.raises(ValueError):
            principal(bad)
    line = kafka_acls_lines(bindings("sdk", "User:CN=a b;x", SETTINGS), "h:1")[0]
    assert "'User:CN=a b;x'" in line  # quoted for the shell


def test_bad_settings_and_roles_are_refused() -> None:
    with pytest.raises(ValueError, match="topic"):
        bindings("sdk", "u", Settings(topic_prefix="a b."))
    with pytest.raises(ValueError, match="role"):
        bindings("admin", "u", SETTINGS)
