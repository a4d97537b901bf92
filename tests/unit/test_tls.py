"""The local CA and broker certificate are what a TLS client will accept."""

from __future__ import annotations

import ipaddress
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.verification import PolicyBuilder, Store

from services.core.errors import ConfigError
from services.embedded import tls

pytestmark = pytest.mark.unit


def _certs(pem: Path) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(pem.read_bytes())


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_broker_chain_verifies_against_ca_for_loopback_ip(tmp_path: Path) -> None:
    broker_pem = tls.issue_broker_cert(tmp_path)
    leaf, *intermediates = _certs(broker_pem)
    (ca,) = _certs(tmp_path / tls.CA_CERT)

    verifier = (
        PolicyBuilder().store(Store([ca])).build_server_verifier(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    )
    chain = verifier.verify(leaf, intermediates)
    assert chain[-1] == ca

    by_dns = PolicyBuilder().store(Store([ca])).build_server_verifier(x509.DNSName("localhost"))
    by_dns.verify(leaf, intermediates)


def test_san_names_loopback_ip_and_localhost(tmp_path: Path) -> None:
    leaf = _certs(tls.issue_broker_cert(tmp_path))[0]
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("127.0.0.1") in san.get_values_for_type(x509.IPAddress)
    assert "localhost" in san.get_values_for_type(x509.DNSName)


def test_broker_pem_starts_with_unencrypted_pkcs8_key_matching_the_leaf(tmp_path: Path) -> None:
    data = tls.issue_broker_cert(tmp_path).read_bytes()
    assert data.startswith(b"-----BEGIN PRIVATE KEY-----")
    key = serialization.load_pem_private_key(data, password=None)
    leaf = _certs(tmp_path / tls.BROKER_PEM)[0]
    assert key.public_key() == leaf.public_key()


def test_private_key_files_are_owner_only(tmp_path: Path) -> None:
    tls.issue_broker_cert(tmp_path)
    assert _mode(tmp_path / tls.CA_KEY) == 0o600
    assert _mode(tmp_path / tls.BROKER_PEM) == 0o600


def test_ensure_ca_reuses_an_existing_ca(tmp_path: Path) -> None:
    cert_path, key_path = tls.ensure_ca(tmp_path)
    first_cert, first_key = cert_path.read_bytes(), key_path.read_bytes()

    assert tls.ensure_ca(tmp_path) == (cert_path, key_path)
    assert cert_path.read_bytes() == first_cert
    assert key_path.read_bytes() == first_key

    tls.issue_broker_cert(tmp_path)
    assert cert_path.read_bytes() == first_cert


def test_half_a_ca_is_refused(tmp_path: Path) -> None:
    tls.ensure_ca(tmp_path)
    (tmp_path / tls.CA_KEY).unlink()
    with pytest.raises(ConfigError, match="incomplete local CA"):
        tls.ensure_ca(tmp_path)
