"""Broker URLs and identities without a broker: ``parse_broker_url`` (percent-decoded credentials, TLS
files from the environment for ``mqtts://`` only), ``redact_url``, the inbox topics of ``wire`` and the
TLS context both transports connect with."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from dormant import wire
from dormant.config import (
    BROKER_CA_FILE_ENV,
    BROKER_CERT_FILE_ENV,
    BROKER_KEY_FILE_ENV,
    BrokerAddress,
    Settings,
    parse_broker_url,
    redact_url,
    with_tls_files,
)
from dormant.transport import TransportError
from dormant.transport._tls import tls_context
from dormant_local.broker_security import BrokerAccount, make_tls_files

NO_ENV: dict[str, str] = {}
TRICKY_PASSWORD = "p@ss:w/o%rd?#&+ é"


# ------------------------------------------------------------------------------------------ parsing


def test_user_name_and_password_are_percent_decoded() -> None:
    account = BrokerAccount("al.ice@example.org", TRICKY_PASSWORD, "caller")
    address = parse_broker_url(account.url("127.0.0.1", 1999), environ=NO_ENV)
    assert (address.username, address.password) == ("al.ice@example.org", TRICKY_PASSWORD)
    assert (address.host, address.port, address.tls) == ("127.0.0.1", 1999, False)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mqtt://127.0.0.1:1883", BrokerAddress("127.0.0.1", 1883)),
        ("broker.example:1999", BrokerAddress("broker.example", 1999)),
        ("tcp://h", BrokerAddress("h", 1883)),
        ("mqtts://h", BrokerAddress("h", 8883, tls=True)),
        ("mqtt://ann@h", BrokerAddress("h", 1883, username="ann")),
        ("mqtt://ann:@h", BrokerAddress("h", 1883, username="ann", password="")),
        ("mqtt://a%20b:c%25d@[::1]:7", BrokerAddress("::1", 7, username="a b", password="c%d")),
    ],
)
def test_addresses(url: str, expected: BrokerAddress) -> None:
    assert parse_broker_url(url, environ=NO_ENV) == expected


def test_the_password_is_in_no_repr_and_no_error() -> None:
    address = parse_broker_url("mqtt://ann:s3cret@h:1", environ=NO_ENV)
    assert "s3cret" not in repr(address) and "ann" in repr(address)
    settings = Settings(broker_url="mqtt://ann:s3cret@h:1", catalog_url="postgresql://u:pg-secret@h/db")
    assert "s3cret" not in repr(settings) and "pg-secret" not in repr(settings)
    assert "mqtt://ann:***@h:1" in repr(settings)
    with pytest.raises(ValueError, match="no valid port") as caught:
        parse_broker_url("mqtt://ann:s3cret@h:port", environ=NO_ENV)
    assert "s3cret" not in str(caught.value)
    with pytest.raises(ValueError, match="unsupported broker URL scheme 'http'") as caught:
        parse_broker_url("http://ann:s3cret@h:1", environ=NO_ENV)
    assert "s3cret" not in str(caught.value)


def test_tls_files_come_from_the_environment_for_mqtts_only() -> None:
    env = {BROKER_CA_FILE_ENV: "/ca.pem", BROKER_CERT_FILE_ENV: "/me.pem", BROKER_KEY_FILE_ENV: "/me.key"}
    address = parse_broker_url("mqtts://h", environ=env)
    assert (address.ca_file, address.cert_file, address.key_file) == ("/ca.pem", "/me.pem", "/me.key")
    with pytest.raises(ValueError, match="is not TLS: use mqtts://") as caught:
        parse_broker_url("mqtt://ann:s3cret@h", environ={BROKER_CA_FILE_ENV: "/ca.pem"})
    assert BROKER_CA_FILE_ENV in str(caught.value) and "s3cret" not in str(caught.value)
    without_cert = f"{BROKER_KEY_FILE_ENV} \\(keyfile\\) is set without {BROKER_CERT_FILE_ENV}"
    with pytest.raises(ValueError, match=without_cert):
        parse_broker_url("mqtts://h", environ={BROKER_KEY_FILE_ENV: "/me.key"})
    empty = {BROKER_CA_FILE_ENV: "", BROKER_CERT_FILE_ENV: ""}  # set but empty: unset
    assert parse_broker_url("mqtt://h", environ=empty) == BrokerAddress("h", 1883)


def test_tls_files_in_the_urls_query_make_it_self_contained_and_win_over_the_environment() -> None:
    url = with_tls_files(
        "mqtts://ann:s3cret@h:8883", ca_file="/m/ca.pem", cert_file="/m/c.pem", key_file="/k"
    )
    assert url == "mqtts://ann:s3cret@h:8883?cafile=/m/ca.pem&certfile=/m/c.pem&keyfile=/k"
    address = parse_broker_url(url, environ={BROKER_CA_FILE_ENV: "/env.pem"})
    assert (address.ca_file, address.cert_file, address.key_file) == ("/m/ca.pem", "/m/c.pem", "/k")
    assert address.password == "s3cret" and address.port == 8883
    assert parse_broker_url("mqtts://h?cafile=/a%20b.pem", environ=NO_ENV).ca_file == "/a b.pem"
    assert redact_url(url) == "mqtts://ann:***@h:8883?cafile=/m/ca.pem&certfile=/m/c.pem&keyfile=/k"
    assert with_tls_files("mqtts://h") == "mqtts://h"


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("mqtt://ann:s3cret@h?cafile=/ca.pem", "is not TLS: use mqtts://"),  # it would be ignored
        ("mqtts://ann:s3cret@h?verify=no", "unknown broker URL parameter 'verify'"),
        ("mqtts://ann:s3cret@h?cafile=/a&cafile=/b", "'cafile' is given twice"),
        ("mqtts://ann:s3cret@h?cafile=", "'cafile' is empty"),
        ("mqtts://ann:s3cret@h?cafile", "not name=value pairs"),
        ("mqtts://ann:s3cret@h?keyfile=/k", "keyfile\\) is set without"),
        ("mqtts://ann:s3cret@h/topic", "no path or fragment"),
        ("mqtts://ann:s3cret@h#x", "no path or fragment"),
    ],
)
def test_a_broker_url_says_nothing_that_would_be_ignored(url: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem) as caught:
        parse_broker_url(url, environ=NO_ENV)
    assert "s3cret" not in str(caught.value)


def test_the_process_environment_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(BROKER_CA_FILE_ENV, "/from-env.pem")
    assert parse_broker_url("mqtts://h").ca_file == "/from-env.pem"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("mqtt://a:b@h:1", "mqtt://a:***@h:1"),
        ("mqtt://h:1", "mqtt://h:1"),
        ("mqtt://ann@h", "mqtt://ann@h"),
        ("mqtts://al%40ice:p%3A%2F@h:9", "mqtts://al%40ice:***@h:9"),
        ("postgresql://u:pw@h/db?sslmode=require", "postgresql://u:***@h/db?sslmode=require"),
        ("mqtt://a:p/w@h:1", "mqtt://a:***@h:1"),  # an unquoted '/' in the password
        ("a:b@h", "a:***@h"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


# ------------------------------------------------------------------------------------------ inboxes


def test_inbox_topics() -> None:
    assert wire.reply_topic("c1") == "reply/c1"
    assert wire.reply_filter("c1") == "reply/c1/#"
    assert wire.reply_topic("c1", "alice") == "reply/alice/c1"
    assert wire.reply_filter("c1", "dormant.runtime.svc") == "reply/dormant.runtime.svc/c1/#"
    assert wire.reply_topic_problem(wire.reply_topic("c1", "al@ice")) is None


@pytest.mark.parametrize("level", ["", "a/b", "a+", "#", "a\x00b"])
def test_an_inbox_level_must_be_one_plain_topic_level(level: str) -> None:
    with pytest.raises(ValueError, match=r"broker user name .* cannot be an inbox topic level"):
        wire.reply_topic("c1", level)
    with pytest.raises(ValueError, match=r"client id .* cannot be an inbox topic level"):
        wire.reply_filter(level, "alice")


# ------------------------------------------------------------------------------------------ TLS


def test_a_plain_address_has_no_tls_context() -> None:
    assert tls_context(BrokerAddress("h", 1883)) is None


def test_the_tls_context_checks_the_broker_and_speaks_tls_12_or_later(tmp_path: Path) -> None:
    files = make_tls_files(tmp_path)
    context = tls_context(BrokerAddress("h", 8883, tls=True, ca_file=str(files.ca_cert)))
    assert context is not None
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    # Without a CA file the system's trust store decides.
    system = tls_context(BrokerAddress("h", 8883, tls=True))
    assert system is not None and system.verify_mode == ssl.CERT_REQUIRED


def test_unreadable_tls_files_are_transport_errors(tmp_path: Path) -> None:
    files = make_tls_files(tmp_path)
    with pytest.raises(TransportError, match="cannot read the broker CA file"):
        tls_context(BrokerAddress("h", 8883, tls=True, ca_file=str(tmp_path / "missing.pem")))
    not_a_certificate = tmp_path / "garbage.pem"
    not_a_certificate.write_text("not a certificate")
    with pytest.raises(TransportError, match="cannot load the client certificate"):
        tls_context(BrokerAddress("h", 8883, tls=True, cert_file=str(not_a_certificate)))
    # A certificate whose key is missing (it is in neither file).
    with pytest.raises(TransportError, match="cannot load the client certificate"):
        tls_context(BrokerAddress("h", 8883, tls=True, cert_file=str(files.server_cert)))
    # A certificate with its key loads.
    loaded = tls_context(
        BrokerAddress("h", 8883, tls=True, cert_file=str(files.server_cert), key_file=str(files.server_key))
    )
    assert loaded is not None


def test_an_encrypted_key_fails_instead_of_prompting(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization

    files = make_tls_files(tmp_path)
    key = serialization.load_pem_private_key(files.server_key.read_bytes(), password=None)
    encrypted = tmp_path / "encrypted.key"
    encrypted.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"passphrase"),
        )
    )
    with pytest.raises(TransportError, match="the key is encrypted"):
        tls_context(
            BrokerAddress("h", 8883, tls=True, cert_file=str(files.server_cert), key_file=str(encrypted))
        )
