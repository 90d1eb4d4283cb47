"""Redis ACL roles and credentials on a real redis-server of this module's own (its ACL users
go away with it; the shared Redis is left alone): the worker role runs the real pipeline,
a reader of one app reads it whole and nothing of another app, writes nothing; bad
credentials are one line; TLS with a client certificate."""

from __future__ import annotations

import copy
import json
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import reference as ref
from click.testing import CliRunner
from compare import compare_companies, compare_users
from redis.exceptions import NoPermissionError

from cli.main import main
from projections import acl, keys
from projections.reader import NotFound, Reader
from schemas.generate import generate
from streams.redis_clients import sync_client
from streams.settings import Settings

pytestmark = pytest.mark.integration

PROFILES = str(Path(sys.executable).with_name("profiles"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrivateRedis:
    """A redis-server on a free port, plain or TLS only (then clients need a certificate)."""

    def __init__(self, tmp: Path, tls: dict[str, Path] | None = None) -> None:
        self.port = free_port()
        self.tls = tls
        listen = ["--port", str(self.port)]
        if tls is not None:
            listen = [
                "--port", "0", "--tls-port", str(self.port),
                "--tls-cert-file", str(tls["server.pem"]),
                "--tls-key-file", str(tls["server.key"]),
                "--tls-ca-cert-file", str(tls["ca.pem"]),
                "--tls-auth-clients", "yes",
            ]  # fmt: skip
        log = open(tmp / f"redis-{self.port}.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            ["redis-server", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(tmp), *listen],
            stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + 20
        while True:
            try:
                self.admin().ping()
                return
            except redis.ConnectionError:
                assert self.proc.poll() is None, "redis-server exited"
                assert time.monotonic() < deadline, "redis-server did not answer"
                time.sleep(0.1)

    @property
    def url(self) -> str:
        return f"{'rediss' if self.tls else 'redis'}://127.0.0.1:{self.port}/0"

    def admin(self) -> redis.Redis:
        """The `default` user of this server."""
        if self.tls is None:
            return redis.Redis(port=self.port)
        return redis.Redis(
            port=self.port,
            ssl=True,
            ssl_ca_certs=str(self.tls["ca.pem"]),
            ssl_certfile=str(self.tls["client.pem"]),
            ssl_keyfile=str(self.tls["client.key"]),
        )

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateRedis]:
    s = PrivateRedis(tmp_path_factory.mktemp("acl-redis"))
    yield s
    s.stop()


def role_line(env: dict[str, str], *args: str, password: str) -> str:
    """`profiles acl ...` (the real CLI code, in-process), the password on stdin."""
    out = CliRunner().invoke(main, ["acl", *args], input=password + "\n", env=env)
    assert out.exit_code == 0, out.output
    assert password not in out.stdout
    return out.stdout.strip()


def create_role(server: PrivateRedis, env: dict[str, str], *args: str) -> tuple[str, str]:
    """Create a role the README's way (piped into redis-cli); returns (user, password)."""
    password = secrets.token_urlsafe(16)
    line = role_line(env, *args, password=password)
    cli = subprocess.run(
        ["redis-cli", "-p", str(server.port)], input=line + "\n", text=True, capture_output=True
    )
    assert cli.stdout.strip() == "OK", (line, cli.stdout, cli.stderr)
    return line.split(" ")[2], password


def login(server: PrivateRedis, user: str, password: str, **more: Any) -> Settings:
    return Settings(
        redis_url=server.url,
        redis_username=user,
        redis_password=password,  # type: ignore[arg-type]
        **more,
    )


def denied(call: Callable[..., Any], *args: Any) -> bool:
    try:
        call(*args)
    except NoPermissionError:
        return True
    return False


# ---- the patterns, key by key, on a real Redis ---------------------------------------------

APPS = ["a", "ab", "a.b", "u", "c", "ix", "sg", "due"]


def typed_keys(namespace: str, app_id: str) -> list[tuple[str, str]]:
    """(key, type) of every kind of key keys.py builds for an app."""
    out = []
    for entity_id in ("x:y", "*"):
        out += [
            (keys.user(namespace, app_id, entity_id), "hash"),
            (keys.company(namespace, app_id, entity_id), "hash"),
            (keys.segment_members(namespace, app_id, entity_id, 1), "zset"),
        ]
    out += [(keys.users_index(namespace, app_id, sort, 2), "zset") for sort in keys.INDEX_SORTS]
    out += [(keys.due(namespace, app_id, scope, 3), "zset") for scope in ("user", "company")]
    return out


def shared_keys(namespace: str) -> list[tuple[str, str]]:
    return [
        (keys.segment_registry(namespace), "hash"),
        (keys.segment_progress(namespace), "hash"),
        (keys.pointer(namespace), "string"),
    ]


def read(client: redis.Redis, key: str, kind: str) -> Any:
    if kind == "hash":
        return client.hget(key, keys.HEADER), client.hmget(key, [keys.HEADER])
    if kind == "zset":
        return client.zcard(key), client.zrangebylex(key, "-", "+", 0, 10)
    return client.get(key)


def write(client: redis.Redis, key: str, kind: str) -> Any:
    if kind == "hash":
        return client.hset(key, "w", b"1")
    if kind == "zset":
        return client.zadd(key, {"w": 0})
    return client.set(key, b"w")


def check_reader(reader: redis.Redis, every: dict[str, str], readable: set[str]) -> None:
    """The reader reads `readable` and nothing else of `every`, writes nothing, lists nothing."""
    for key, kind in every.items():
        assert denied(read, reader, key, kind) != (key in readable), key
        assert denied(write, reader, key, kind), key
        assert denied(reader.unlink, key), key
    for call in (reader.flushdb, lambda: reader.keys("*"), lambda: reader.scan(0)):
        assert denied(call)
    assert denied(lambda: reader.eval("return 1", 0))


def test_roles_cover_exactly_their_keys_on_a_real_redis(server: PrivateRedis) -> None:
    ns = f"acl{secrets.token_hex(4)}"
    env = {**os.environ, "PROFILES_NAMESPACE": ns, "PROFILES_REDIS_URL": server.url}
    generations = [ns, f"{ns}-1", f"{ns}-12"]
    strangers = [f"{ns}x", "other"]  # other logical namespaces
    admin = server.admin()
    every: dict[str, str] = {}
    for namespace in generations + strangers + [f"{ns}-verify-0a1b2c3d"]:
        for app in APPS:
            every.update(typed_keys(namespace, app))
        every.update(shared_keys(namespace))
    for key, kind in every.items():
        write(admin, key, kind)

    worker = sync_client(login(server, *create_role(server, env, "worker")))
    for key, kind in every.items():
        mine = key.startswith((f"{ns}:", f"{ns}-", f"{ns}.pointer"))
        assert denied(read, worker, key, kind) != mine, key
        assert denied(write, worker, key, kind) != mine, key
    for call in (worker.flushdb, worker.flushall, lambda: worker.keys("*"), worker.info):
        assert denied(call)
    assert denied(lambda: worker.config_get("*")) and denied(worker.acl_list)
    assert denied(lambda: worker.eval("return 1", 0))

    for app in APPS:
        reader = sync_client(login(server, *create_role(server, env, "reader", app)))
        readable = {k for k in every if k.split(":")[:2] in ([g, app] for g in generations)}
        check_reader(reader, every, readable | {keys.pointer(ns)})

    # The commands of the roles, as this Redis classifies them.
    dangerous = {c.decode() for c in admin.execute_command("ACL", "CAT", "dangerous")}
    dangerous |= {c.decode() for c in admin.execute_command("ACL", "CAT", "admin")}
    assert not dangerous & set(acl.WORKER_COMMANDS)
    writers = {c.decode() for c in admin.execute_command("ACL", "CAT", "write")}
    assert not writers & set(acl.READER_COMMANDS)


# ---- the real pipeline under the roles -------------------------------------------------------


def test_worker_role_runs_the_pipeline_and_a_reader_sees_its_app_only(
    pipeline: Any, server: PrivateRedis
) -> None:
    now_ms = int(time.time() * 1000)
    records = generate(
        users=80, apps=2, days=14, end_ms=now_ms, seed=5, commands=True, duplicates=0.05,
        shuffle=True,
    )  # fmt: skip
    mine, theirs = sorted({r["app_id"] for r in records})
    ns = pipeline.settings.namespace
    env = {**pipeline.env, "PROFILES_REDIS_URL": server.url}

    def as_role(user: str, password: str) -> dict[str, str]:
        return {**env, "PROFILES_REDIS_USERNAME": user, "PROFILES_REDIS_PASSWORD": password}

    worker = create_role(server, env, "worker")
    readers = {app: create_role(server, env, "reader", app) for app in (mine, theirs)}
    pipeline.env = as_role(*worker)
    pipeline.start_worker()
    published = pipeline.publish_file(records)
    assert published.returncode == 0, published.stderr
    status = pipeline.wait_idle()
    assert status["dlq"] == 0

    # Every view of each app, through the real CLI logged in as that app's reader.
    for app, (user, password) in readers.items():
        viewer = copy.copy(pipeline)
        viewer.env = as_role(user, password)
        of_app = [r for r in records if r["app_id"] == app]
        assert compare_users(viewer, of_app, now_ms) > 10
        assert compare_companies(viewer, of_app, now_ms) > 1

    # The reader of `mine`, through the reader library, on the other app: every read denied.
    cfg = login(server, *readers[mine])
    reader = Reader(sync_client(cfg), ns)
    their_user = sorted(u for a, u in ref.user_ids(records, now_ms=now_ms) if a == theirs)[0]
    their_company = sorted(c for a, c in ref.company_ids(records, now_ms=now_ms) if a == theirs)[0]
    reads: list[Callable[[], Any]] = [
        lambda: reader.user(theirs, their_user),
        lambda: reader.sessions(theirs, their_user),
        lambda: reader.sentiment(theirs, their_user),
        lambda: reader.engagement(theirs, their_user),
        lambda: reader.company(theirs, their_company),
        lambda: reader.company_users(theirs, their_company),
        lambda: reader.users(theirs),
        lambda: reader.count_users(theirs),
        lambda: reader.segment_members(theirs, "any"),
    ]
    assert all(denied(call) for call in reads)
    my_user = sorted(u for a, u in ref.user_ids(records, now_ms=now_ms) if a == mine)[0]
    assert reader.user(mine, my_user)["user_id"] == my_user

    # A segment, added under the worker role (registry, backfill); its members readable.
    segment = {
        "id": f"active-{ns}",
        "app_id": mine,
        "name": "Active",
        "scope": "user",
        "rule": {"op": "and", "conditions": [
            {"kind": "number", "field": "total_sessions", "operator": "gte", "value": 1},
        ]},
    }  # fmt: skip
    path = pipeline.tmp / "segment.json"
    path.write_text(json.dumps(segment))
    added = pipeline.cli("segments", "add", str(path), "--timeout", "120")
    assert added.exit_code == 0, added.output
    members, _cursor = reader.segment_members(mine, segment["id"], limit=10_000)
    assert 10 < len(members) == reader.count_members(mine, segment["id"])

    # Key by key, as the worker wrote them: the other app's unreadable, none writable.
    admin = server.admin()
    client = sync_client(cfg)
    kinds = {b"hash": "hash", b"zset": "zset", b"string": "string"}
    seen = {mine: 0, theirs: 0}
    for raw in admin.scan_iter(match=f"{ns}*", count=1000):
        key = raw.decode()
        kind = kinds[admin.type(key)]
        app = keys.unescape(key.split(":")[1]) if ":" in key else None
        if app in seen:
            seen[app] += 1
        assert denied(read, client, key, kind) == (app != mine and ":" in key), key
        assert denied(write, client, key, kind), key
        assert denied(client.unlink, key), key
    assert seen[mine] > 10 and seen[theirs] > 10

    # The CLI as that reader, on the other app: one line, exit 2.
    out = subprocess.run(
        [PROFILES, "user", theirs, their_user, "--json"],
        env=as_role(*readers[mine]),
        text=True,
        capture_output=True,
        timeout=60,
    )
    assert out.returncode == 2, out.stderr
    assert out.stderr.count("\n") == 1 and "may not" in out.stderr, out.stderr

    # The operator commands under the worker role: replay --verify finds no difference.
    verified = pipeline.cli("replay", "--verify", "--json")
    assert verified.exit_code == 0, verified.output
    assert json.loads(verified.stdout) == []


def test_wrong_credentials_are_one_line_and_exit_2(pipeline: Any, server: PrivateRedis) -> None:
    env = {**pipeline.env, "PROFILES_REDIS_URL": server.url}
    user, _password = create_role(server, env, "worker")
    for who in (user, "nobody"):
        env_wrong = {**env, "PROFILES_REDIS_USERNAME": who, "PROFILES_REDIS_PASSWORD": "wrong"}
        for args in (["user", "acme-app", "u-1"], ["users", "acme-app"], ["worker"]):
            out = subprocess.run(
                [PROFILES, *args], env=env_wrong, text=True, capture_output=True, timeout=120
            )
            assert out.returncode == 2, (args, out.stderr)
            assert out.stderr.count("\n") == 1, (args, out.stderr)
            assert "refused the credentials" in out.stderr and "Traceback" not in out.stderr


# ---- TLS ---------------------------------------------------------------------------------


def make_certs(directory: Path, name: str = "") -> dict[str, Path]:
    """A throwaway CA, a server certificate for 127.0.0.1 and a client certificate."""
    d = directory / f"certs{name}"
    d.mkdir()

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
        "-days", "2", "-subj", "/CN=profiles test CA",
    )  # fmt: skip
    (d / "server.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    (d / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
    for who in ("server", "client"):
        openssl(
            "req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{who}.key", "-out", f"{who}.csr",
            "-subj", f"/CN={who}",
        )  # fmt: skip
        openssl(
            "x509", "-req", "-in", f"{who}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", f"{who}.pem", "-days", "2", "-extfile", f"{who}.ext",
        )  # fmt: skip
    return {p.name: p for p in d.iterdir()}


def test_tls_with_a_client_certificate(tmp_path: Path) -> None:
    certs = make_certs(tmp_path)
    server = PrivateRedis(tmp_path, tls=certs)
    try:
        ns = f"acl{secrets.token_hex(4)}"
        env = {**os.environ, "PROFILES_NAMESPACE": ns}
        password = secrets.token_urlsafe(16)
        line = role_line(env, "reader", "acme-app", password=password)
        server.admin().execute_command(*line.split(" "))
        user = line.split(" ")[2]
        tls = {
            "PROFILES_REDIS_URL": server.url,
            "PROFILES_REDIS_USERNAME": user,
            "PROFILES_REDIS_PASSWORD": password,
            "PROFILES_REDIS_TLS_CA_FILE": str(certs["ca.pem"]),
            "PROFILES_REDIS_TLS_CERT_FILE": str(certs["client.pem"]),
            "PROFILES_REDIS_TLS_KEY_FILE": str(certs["client.key"]),
        }

        def profiles(*args: str, **changes: str) -> subprocess.CompletedProcess[str]:
            run_env = {k: v for k, v in {**env, **tls, **changes}.items() if v}
            return subprocess.run(
                [PROFILES, *args], env=run_env, text=True, capture_output=True, timeout=60
            )

        listed = profiles("users", "acme-app", "--json")  # Redis answered: the app is empty
        assert listed.returncode == 3, listed.stderr
        assert listed.stderr == "profiles: app 'acme-app' has no users or companies\n"
        missing = profiles("user", "acme-app", "u-1", "--json")
        assert missing.returncode == 3 and "not found" in missing.stderr
        reader = Reader.from_url(
            server.url,
            namespace=ns,
            password=password,
            username=user,
            ssl_ca_certs=str(certs["ca.pem"]),
            ssl_certfile=str(certs["client.pem"]),
            ssl_keyfile=str(certs["client.key"]),
        )
        with pytest.raises(NotFound):
            reader.users("acme-app")
        assert denied(lambda: reader.users("other-app"))

        other_ca = make_certs(tmp_path, "-other")["ca.pem"]
        for changes in (
            {"PROFILES_REDIS_TLS_CA_FILE": str(other_ca)},  # not the CA that signed the server
            {"PROFILES_REDIS_TLS_CERT_FILE": "", "PROFILES_REDIS_TLS_KEY_FILE": ""},  # no cert
            {"PROFILES_REDIS_URL": server.url.replace("rediss:", "redis:"), **dict.fromkeys(
                ("PROFILES_REDIS_TLS_CA_FILE", "PROFILES_REDIS_TLS_CERT_FILE",
                 "PROFILES_REDIS_TLS_KEY_FILE"), "")},  # plain TCP to a TLS port
        ):  # fmt: skip
            refused = profiles("users", "acme-app", "--json", **changes)
            assert refused.returncode == 2, (changes, refused.stderr)
            assert refused.stderr.count("\n") == 1, (changes, refused.stderr)
    finally:
        server.stop()
