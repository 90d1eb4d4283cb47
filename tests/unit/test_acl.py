"""The generated ACL roles: each pattern covers exactly the keys that keys.py spells for it.

fnmatchcase stands in for Redis's glob here: the roles only use literal characters, `*` and
`[0-9]`, where the two agree. tests/integration/test_access.py checks them on a real Redis."""

from __future__ import annotations

import hashlib
from fnmatch import fnmatchcase

import pytest
from hypothesis import given
from hypothesis import strategies as st

from projections import acl, keys

NS = "ps"
GENERATIONS = ["ps", "ps-1", "ps-12", "ps-123456"]
NOT_GENERATIONS = ["psx", "ps-x", "ps-1234567", "other", "ps-1-2"]
USER_IDS = ["u-1", "a:b", "*", "}{", "ps:x:u:", "?[]\\", "é 😀"]
# App ids named like key parts: a `*` between namespace and app would let these reach others.
TRICKY_APPS = ["a", "ab", "a.b", "A", "u", "c", "ix", "sg", "due", "id", "last_seen", "ps", "-"]


def app_keys(namespace: str, app_id: str) -> list[str]:
    """Every key keys.py builds for one app (ids chosen to stress the escaping)."""
    out = []
    for entity_id in USER_IDS:
        out += [
            keys.user(namespace, app_id, entity_id),
            keys.company(namespace, app_id, entity_id),
            keys.segment_members(namespace, app_id, entity_id, 0),
        ]
    for sort in keys.INDEX_SORTS:
        out += [keys.users_index(namespace, app_id, sort, b) for b in (0, keys.INDEX_BUCKETS - 1)]
    out += [keys.due(namespace, app_id, scope, 3) for scope in keys.SCOPE_LETTERS]
    return out


def outside_apps(namespace: str) -> list[str]:
    return [keys.segment_registry(namespace), keys.segment_progress(namespace)]


def patterns(rules: list[str], prefix: str) -> list[str]:
    return [r[len(prefix) :] for r in rules if r.startswith(prefix)]


def reads(rules: list[str], key: str) -> bool:
    return any(fnmatchcase(key, p) for p in patterns(rules, "%R~"))


def writes(rules: list[str], key: str) -> bool:
    return any(fnmatchcase(key, p) for p in patterns(rules, "~"))


def test_a_reader_reads_every_key_of_its_app_in_every_generation() -> None:
    rules = acl.reader_rules(NS, "acme-app")
    for namespace in GENERATIONS:
        assert all(reads(rules, k) for k in app_keys(namespace, "acme-app")), namespace
    assert reads(rules, keys.pointer(NS))
    assert patterns(rules, "~") == [], "a reader has read-only key patterns only"


def test_a_reader_reads_no_key_of_another_app_nor_the_registry() -> None:
    for app in TRICKY_APPS:
        rules = acl.reader_rules(NS, app)
        for namespace in GENERATIONS + NOT_GENERATIONS:
            for other in TRICKY_APPS:
                if other != app or namespace in NOT_GENERATIONS:
                    leaked = [k for k in app_keys(namespace, other) if reads(rules, k)]
                    assert not leaked, (app, namespace, other, leaked[:3])
            assert not any(reads(rules, k) for k in outside_apps(namespace))
        for pointer in ("psx.pointer", "ps-1.pointer", "other.pointer"):
            assert not reads(rules, pointer)


app_ids = st.from_regex(r"[A-Za-z0-9._-]{1,64}", fullmatch=True)


@given(mine=app_ids, theirs=app_ids, user_id=st.text(min_size=1, max_size=20))
def test_a_reader_pattern_matches_a_key_iff_it_is_of_its_app(
    mine: str, theirs: str, user_id: str
) -> None:
    rules = acl.reader_rules(NS, mine)
    for namespace in GENERATIONS:
        key = keys.user(namespace, theirs, user_id)
        assert reads(rules, key) == (mine == theirs)
        assert reads(rules, keys.users_index(namespace, theirs, "id", 5)) == (mine == theirs)


def test_the_worker_covers_the_whole_namespace_and_nothing_else() -> None:
    rules = acl.worker_rules(NS)
    scratch = "ps-verify-0123abcd"  # replay/verify.py's scratch namespaces
    for namespace in [*GENERATIONS, scratch]:
        for app in ("acme-app", "u", "a.b"):
            assert all(writes(rules, k) for k in app_keys(namespace, app)), namespace
        assert all(writes(rules, k) for k in outside_apps(namespace))
    assert writes(rules, keys.pointer(NS))
    for namespace in ("psx", "other", "p"):
        assert not any(writes(rules, k) for k in app_keys(namespace, "acme-app"))
        assert not any(writes(rules, k) for k in outside_apps(namespace))
        assert not writes(rules, keys.pointer(namespace))


def test_also_adds_a_physical_namespace_of_another_name() -> None:
    reader = acl.reader_rules(NS, "acme-app", also=["blue"])
    assert all(reads(reader, k) for k in app_keys("blue", "acme-app"))
    assert not any(reads(reader, k) for k in app_keys("blue", "other-app"))
    assert not any(reads(reader, k) for k in outside_apps("blue"))
    worker = acl.worker_rules(NS, also=["blue"])
    assert all(writes(worker, k) for k in app_keys("blue", "acme-app") + outside_apps("blue"))


@pytest.mark.parametrize("app_id", ["a*", "a?", "a[0]", "a:b", "a b", "a\\b", "", "x" * 65, "é"])
def test_app_ids_the_schema_refuses_make_no_role(app_id: str) -> None:
    with pytest.raises(ValueError, match="app id"):
        acl.reader_rules(NS, app_id)


@pytest.mark.parametrize("namespace", ["p*", "ps:x", "ps.x", "", "[ps]"])
def test_namespaces_with_glob_characters_make_no_role(namespace: str) -> None:
    with pytest.raises(ValueError, match="namespace"):
        acl.worker_rules(namespace)
    with pytest.raises(ValueError, match="namespace"):
        acl.reader_rules("ps", "acme-app", also=[namespace])


def test_the_line_carries_the_password_hash_only() -> None:
    line = acl.setuser("ps-reader-acme", "s3cret pass", acl.reader_rules(NS, "acme"))
    words = line.split(" ")
    assert words[:6] == ["ACL", "SETUSER", "ps-reader-acme", "reset", "on", words[5]]
    assert words[5] == "#" + hashlib.sha256(b"s3cret pass").hexdigest()
    assert "s3cret" not in line
    for bad in ("default", "a b", ""):
        with pytest.raises(ValueError):
            acl.setuser(bad, "pw", [])
    with pytest.raises(ValueError, match="empty"):
        acl.setuser("ps-worker", "", [])


def test_a_reader_may_not_list_keys() -> None:
    # SCAN/KEYS would show other apps' key names, and so their user ids.
    assert not {"scan", "keys", "randomkey"} & set(acl.READER_COMMANDS)
