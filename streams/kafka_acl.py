"""Kafka ACL roles, generated from the topic names (topics.py) and the worker's group.

- sdk: produces the five event topics (identify, track, page, feedback, content), nothing
  else; reads nothing. It may see that the pipeline's other topics exist and their configs,
  because `profiles publish` lists the topics (and checks their retention) before it sends.
- operator: produces the commands topic (`profiles command`, `publish --commands`), and may
  watch the pipeline without reading a record: the topics' offsets and configs and the
  worker group's offsets and members (`profiles status`, `wait`, `topics`).
- worker: `profiles worker` and `profiles replay` (with `--verify`): reads the source topics,
  the commands, the company deltas, the identity links and merges (docs/design.md §7) and the
  segment definitions; produces the company deltas, the identity links and merges and dead
  letters; creates the pipeline's topics that are missing; its consumer group, the
  groups of replays and verifies, and the topic Faust elects its leader with.

Every resource is named in full (LITERAL patterns) except the replay and verify groups, whose
names end in a generation (PREFIXED `<group>-replay-`, `<group>-verify-`). Nothing here
allows a principal on another prefix's topics or on a group it does not name.

The other operator commands (`dlq redrive`, `purge`, `segments add|remove`,
`topics --apply-retention`) read or rewrite any record: they run as a super user.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import asdict, dataclass
from typing import Any

from streams.settings import Settings
from streams.topics import Topics

ROLES = ("sdk", "operator", "worker")

# Kafka's wire codes (org.apache.kafka.common.resource.ResourceType, PatternType,
# acl.AclOperation, AclPermissionType): what CreateAcls, DeleteAcls and DescribeAcls carry.
RESOURCE_TYPES = {"TOPIC": 2, "GROUP": 3, "CLUSTER": 4, "TRANSACTIONAL_ID": 5}
PATTERN_TYPES = {"LITERAL": 3, "PREFIXED": 4}
OPERATIONS = {
    "READ": 3,
    "WRITE": 4,
    "CREATE": 5,
    "DELETE": 6,
    "ALTER": 7,
    "DESCRIBE": 8,
    "DESCRIBE_CONFIGS": 10,
    "ALTER_CONFIGS": 11,
    "IDEMPOTENT_WRITE": 12,
}
PERMISSIONS = {"ALLOW": 3}
ANY_HOST = "*"

# The group of the topic Faust elects its leader with (faust.app.App.conf.leader_topic).
FAUST_LEADER_TOPIC = "{group}-__assignor-__leader"

_USER = re.compile(r"[^\x00-\x1f\x7f]{1,256}")  # any name but control characters
_TOPIC = re.compile(r"[A-Za-z0-9._-]{0,200}")  # Kafka's legal topic characters


@dataclass(frozen=True)
class Binding:
    """One ACL: `principal` may do `operation` on the resource from any host."""

    resource_type: str  # a key of RESOURCE_TYPES
    resource_name: str
    pattern_type: str  # a key of PATTERN_TYPES
    operation: str  # a key of OPERATIONS
    principal: str
    host: str = ANY_HOST
    permission: str = "ALLOW"

    def codes(self) -> tuple[int, str, int, str, str, int, int]:
        """(resource type, name, pattern type, principal, host, operation, permission) as
        the ACL requests carry them."""
        return (
            RESOURCE_TYPES[self.resource_type],
            self.resource_name,
            PATTERN_TYPES[self.pattern_type],
            self.principal,
            self.host,
            OPERATIONS[self.operation],
            PERMISSIONS[self.permission],
        )

    def as_json(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        pattern = "" if self.pattern_type == "LITERAL" else f" ({self.pattern_type.lower()})"
        return (
            f"{self.permission} {self.principal} {self.operation} on "
            f"{self.resource_type} {self.resource_name}{pattern}"
        )


def principal(text: str) -> str:
    """`User:NAME` as given, or a bare NAME as `User:NAME` (the principal a SCRAM or PLAIN
    login gets; a TLS client's is `User:CN=...`)."""
    name = text.removeprefix("User:")
    if not _USER.fullmatch(name) or name == "ANONYMOUS":
        raise ValueError(f"{text!r} is not a principal to give a role (User:NAME)")
    return f"User:{name}"


def _topics(settings: Settings) -> Topics:
    if not _TOPIC.fullmatch(settings.topic_prefix):
        raise ValueError(f"{settings.topic_prefix!r} cannot start a Kafka topic name")
    return Topics(settings.topic_prefix)


def _group(settings: Settings) -> str:
    if not settings.group_id or not _USER.fullmatch(settings.group_id):
        raise ValueError(f"{settings.group_id!r} is not a consumer group id")
    return settings.group_id


def ensured_topics(topics: Topics) -> list[str]:
    """The topics `streams.kafka.ensure_topics` creates when missing (the worker, `publish`
    and `command` call it): whoever calls it must see them, or it tries to create them."""
    return [
        *topics.sources,
        topics.dlq,
        topics.company_deltas,
        topics.segments,
        topics.identity,
        topics.merges,
    ]


def _allow(
    who: str, resource_type: str, names: list[str], operations: tuple[str, ...], pattern: str
) -> list[Binding]:
    return [
        Binding(resource_type, name, pattern, operation, who)
        for name in names
        for operation in operations
    ]


def topic_acls(who: str, names: list[str], *operations: str) -> list[Binding]:
    return _allow(who, "TOPIC", names, operations, "LITERAL")


def bindings(role: str, who: str, settings: Settings) -> list[Binding]:
    """The ACLs of `role` for the principal `who` on the pipeline of `settings` (its topic
    prefix and consumer group), in a stable order."""
    who = principal(who)
    topics = _topics(settings)
    group = _group(settings)
    commands = topics.for_type("command")
    events = [t for t in topics.sources if t != commands]
    ensured = ensured_topics(topics)
    if role == "sdk":
        return [
            *topic_acls(who, events, "WRITE", "DESCRIBE"),
            *topic_acls(who, [t for t in ensured if t not in events], "DESCRIBE"),
            *topic_acls(who, ensured, "DESCRIBE_CONFIGS"),
        ]
    if role == "operator":
        watched = [*ensured, topics.dlq_redriven, topics.purge_staging]
        return [
            *topic_acls(who, [commands], "WRITE", "DESCRIBE"),
            *topic_acls(who, [t for t in watched if t != commands], "DESCRIBE"),
            *topic_acls(who, watched, "DESCRIBE_CONFIGS"),
            *_allow(who, "GROUP", [group], ("DESCRIBE",), "LITERAL"),
        ]
    if role == "worker":
        leader = FAUST_LEADER_TOPIC.format(group=group)
        return [
            *topic_acls(who, topics.sources, "READ", "DESCRIBE"),
            *topic_acls(
                who,
                [topics.company_deltas, topics.identity, topics.merges],
                "READ",
                "WRITE",
                "DESCRIBE",
            ),
            *topic_acls(who, [topics.segments], "READ", "DESCRIBE"),
            *topic_acls(who, [topics.dlq], "WRITE", "DESCRIBE"),
            *topic_acls(who, ensured, "CREATE", "DESCRIBE_CONFIGS"),
            *topic_acls(who, [leader], "CREATE", "READ", "DESCRIBE"),
            *_allow(who, "GROUP", [group], ("READ", "DESCRIBE"), "LITERAL"),
            *_allow(
                who,
                "GROUP",
                [f"{group}-replay-", f"{group}-verify-"],
                ("READ", "DESCRIBE"),
                "PREFIXED",
            ),
        ]
    raise ValueError(f"{role!r} is not a role ({', '.join(ROLES)})")


_OPTIONS = {"TOPIC": "--topic", "GROUP": "--group", "TRANSACTIONAL_ID": "--transactional-id"}


def _pascal(operation: str) -> str:
    """DESCRIBE_CONFIGS -> DescribeConfigs, as kafka-acls.sh spells operations."""
    return "".join(word.capitalize() for word in operation.split("_"))


def kafka_acls_lines(found: list[Binding], bootstrap: str, verb: str = "--add") -> list[str]:
    """`kafka-acls.sh` lines that add (or with `--remove`, remove) the bindings: one line per
    principal and resource, with all its operations, in the bindings' order."""
    resources: dict[tuple[str, str, str, str, str], list[str]] = {}
    for b in found:
        key = (b.principal, b.host, b.resource_type, b.resource_name, b.pattern_type)
        resources.setdefault(key, []).append(b.operation)
    lines = []
    for (who, host, resource_type, name, pattern), operations in resources.items():
        words = ["kafka-acls.sh", "--bootstrap-server", bootstrap, verb]
        words += ["--allow-principal", who]
        if host != ANY_HOST:
            words += ["--allow-host", host]
        for operation in operations:
            words += ["--operation", _pascal(operation)]
        if resource_type == "CLUSTER":
            words.append("--cluster")
        else:
            words += [_OPTIONS[resource_type], name]
        if pattern != "LITERAL":
            words += ["--resource-pattern-type", pattern.lower()]
        if verb == "--remove":
            words.append("--force")
        lines.append(shlex.join(words))
    return lines
