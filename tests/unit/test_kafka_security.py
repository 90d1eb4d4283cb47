"""Kafka security settings reach our aiokafka clients and Faust alike, for every protocol."""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import faust
import pytest
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth
from pydantic import ValidationError

from streams.app import build_app
from streams.kafka import KafkaSecurityError, client_options, faust_credentials, ssl_context
from streams.settings import Settings

TLS = Path(__file__).with_name("tls")  # a test CA and a peer certificate it signed (127.0.0.1)
CA, CERT, KEY = str(TLS / "ca.pem"), str(TLS / "peer.pem"), str(TLS / "peer.key")
SASL = {"kafka_sasl_username": "alice", "kafka_sasl_password": "s3cret"}


@pytest.fixture(autouse=True)
def _no_kafka_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in os.environ:
        if name.startswith("PROFILES_KAFKA_"):
            monkeypatch.delenv(name)


def settings(**values: Any) -> Settings:
    return Settings(kafka_bootstrap="k1:9093,k2:9093", **values)


def faust_side(cfg: Settings) -> dict[str, Any]:
    """What Faust's aiokafka consumer and producer get from the app that build_app makes."""
    conf = build_app(cfg).conf
    return dict(credentials_to_aiokafka_auth(conf.broker_credentials, conf.ssl_context))


def comparable(opts: dict[str, Any]) -> dict[str, Any]:
    """Options with the TLS context replaced by what it trusts and checks (every call builds a
    new context, so contexts are compared by content)."""
    out = {k: v for k, v in opts.items() if k != "bootstrap_servers"}
    context = out.pop("ssl_context", None)
    if context is not None:
        cas = sorted(str(ca["subject"]) for ca in context.get_ca_certs())
        out["tls"] = (context.verify_mode, context.check_hostname, cas)
    return out


CASES: list[tuple[dict[str, Any], dict[str, Any], type | None]] = [
    ({}, {"security_protocol": "PLAINTEXT"}, None),
    (
        {"kafka_security_protocol": "SASL_PLAINTEXT", "kafka_sasl_mechanism": "SCRAM-SHA-512"}
        | SASL,
        {
            "security_protocol": "SASL_PLAINTEXT",
            "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_plain_username": "alice",
            "sasl_plain_password": "s3cret",
        },
        faust.SASLCredentials,
    ),
    (
        {"kafka_security_protocol": "sasl_ssl", "kafka_sasl_mechanism": "scram-sha-256"}
        | SASL
        | {"kafka_ssl_cafile": CA},
        {
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": "SCRAM-SHA-256",
            "sasl_plain_username": "alice",
            "sasl_plain_password": "s3cret",
            "tls": (ssl.CERT_REQUIRED, True, ["((('commonName', 'profile-streams test CA'),),)"]),
        },
        faust.SASLCredentials,
    ),
    (
        {"kafka_security_protocol": "SSL", "kafka_ssl_cafile": CA},
        {
            "security_protocol": "SSL",
            "tls": (ssl.CERT_REQUIRED, True, ["((('commonName', 'profile-streams test CA'),),)"]),
        },
        faust.SSLCredentials,
    ),
    (
        {"kafka_security_protocol": "SSL", "kafka_ssl_cafile": CA}
        | {"kafka_ssl_certfile": CERT, "kafka_ssl_keyfile": KEY},
        {
            "security_protocol": "SSL",
            "tls": (ssl.CERT_REQUIRED, True, ["((('commonName', 'profile-streams test CA'),),)"]),
        },
        faust.SSLCredentials,
    ),
]


@pytest.mark.parametrize(("values", "expected", "credentials"), CASES)
def test_each_protocol_maps_to_the_same_options_for_aiokafka_and_faust(
    values: dict[str, Any], expected: dict[str, Any], credentials: type | None
) -> None:
    cfg = settings(**values)
    ours = client_options(cfg)
    assert ours["bootstrap_servers"] == "k1:9093,k2:9093"
    assert comparable(ours) == expected
    assert comparable(faust_side(cfg)) == expected
    made = faust_credentials(cfg)
    assert made is None if credentials is None else type(made) is credentials


def test_without_a_cafile_the_system_cas_verify_the_broker() -> None:
    cfg = settings(kafka_security_protocol="SSL", kafka_ssl_cafile="", kafka_sasl_username="")
    assert (cfg.kafka_ssl_cafile, cfg.kafka_sasl_username) == (None, None)  # empty = unset
    context = ssl_context(cfg)
    assert context is not None
    assert (context.verify_mode, context.check_hostname) == (ssl.CERT_REQUIRED, True)
    assert ssl_context(settings()) is None


def test_options_that_would_be_ignored_are_refused() -> None:
    with pytest.raises(ValidationError, match="needs PROFILES_KAFKA_SASL_MECHANISM"):
        settings(kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_username="alice")
    with pytest.raises(ValidationError, match="SASL_PLAINTEXT or SASL_SSL, not PLAINTEXT"):
        settings(kafka_sasl_mechanism="SCRAM-SHA-256", **SASL)
    with pytest.raises(ValidationError, match="SSL or SASL_SSL, not SASL_PLAINTEXT"):
        settings(
            kafka_security_protocol="SASL_PLAINTEXT",
            kafka_sasl_mechanism="PLAIN",
            kafka_ssl_cafile=CA,
            **SASL,
        )
    with pytest.raises(ValidationError, match="KEYFILE needs PROFILES_KAFKA_SSL_CERTFILE"):
        settings(kafka_security_protocol="SSL", kafka_ssl_keyfile=KEY)
    with pytest.raises(ValidationError, match="no such file"):
        settings(kafka_security_protocol="SSL", kafka_ssl_cafile=str(TLS / "missing.pem"))
    with pytest.raises(ValidationError, match="kafka_security_protocol"):
        settings(kafka_security_protocol="TLS")
    with pytest.raises(ValidationError, match="kafka_sasl_mechanism"):
        settings(kafka_security_protocol="SASL_SSL", kafka_sasl_mechanism="GSSAPI", **SASL)


def test_a_file_that_is_no_pem_is_one_clear_error(tmp_path: Path) -> None:
    junk = tmp_path / "ca.pem"
    junk.write_text("not a certificate")
    with pytest.raises(KafkaSecurityError, match="cannot use the Kafka TLS files"):
        client_options(settings(kafka_security_protocol="SSL", kafka_ssl_cafile=str(junk)))


def handshake(client: ssl.SSLContext) -> str:
    """Connect with `client` to a TLS server that trusts only the test CA and requires a client
    certificate; returns the common name of the client certificate the server saw."""
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=CA)
    server.load_cert_chain(CERT, KEY)
    server.verify_mode = ssl.CERT_REQUIRED
    seen: list[Any] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(writer.get_extra_info("peercert"))
        writer.write(b"ok")
        await writer.drain()
        writer.close()

    async def run() -> None:
        listener = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=server)
        port = listener.sockets[0].getsockname()[1]
        async with listener:
            reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client)
            assert await reader.read() == b"ok"
            writer.close()

    asyncio.run(run())
    return dict(x[0] for x in seen[0]["subject"])["commonName"]


@pytest.mark.parametrize("protocol", ["SSL", "SASL_SSL"])
def test_mutual_tls_verifies_the_broker_and_presents_the_client_certificate(protocol: str) -> None:
    sasl = {"kafka_sasl_mechanism": "SCRAM-SHA-512", **SASL} if protocol == "SASL_SSL" else {}
    cfg = settings(
        kafka_security_protocol=protocol,
        kafka_ssl_cafile=CA,
        kafka_ssl_certfile=CERT,
        kafka_ssl_keyfile=KEY,
        **sasl,
    )
    for side in (client_options(cfg), faust_side(cfg)):
        assert handshake(side["ssl_context"]) == "profile-streams test peer"
    system_cas = ssl_context(settings(kafka_security_protocol="SSL"))
    assert system_cas is not None
    with pytest.raises(ssl.SSLCertVerificationError):  # the test CA is not a system CA
        handshake(system_cas)


def test_a_broker_that_cannot_be_reached_is_one_line_naming_it() -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROFILES_")}
    result = subprocess.run(
        [str(Path(sys.executable).with_name("profiles")), "status"],
        env={**env, "PROFILES_KAFKA_BOOTSTRAP": f"127.0.0.1:{port}"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(
        f"profiles: cannot reach a service: kafka at 127.0.0.1:{port}: "
    )
