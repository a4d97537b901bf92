"""Local certificate authorities: the embedded broker's, and each agency's own for its check API.

Concord's default setup is TLS end to end, even on one laptop, so that the code
paths exercised locally are the ones used against a real cluster.  This module
creates a long-lived local CA once (reused on every later call, so clients that
already trust ``ca.pem`` keep working) and issues short files in the forms Kafka
reads with ``ssl.keystore.type=PEM``: the broker's private key in unencrypted
PKCS#8 followed by its certificate chain in one file.

Files written into the directory:

``ca.pem``       CA certificate (what clients trust)
``ca-key.pem``   CA private key (0600)
``broker.pem``   broker PKCS#8 key + broker certificate + CA certificate (0600)

An implementing agency's subscriber uses a CA of its own the same way
(:func:`ensure_ca` with the agency's name): :func:`issue_server_cert` for the check
API's TLS listener, and :func:`issue_client_cert` once per client system, whose
subject common name is the name the subscriber's clients file gives it.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from services.core.errors import ConfigError
from services.files import write_atomic, write_private

CA_CERT = "ca.pem"
CA_KEY = "ca-key.pem"
BROKER_PEM = "broker.pem"

_CA_LIFETIME = dt.timedelta(days=3650)
_LEAF_LIFETIME = dt.timedelta(days=825)
_CLOCK_SKEW = dt.timedelta(minutes=5)
DEFAULT_HOSTS: tuple[str, ...] = ("localhost", "127.0.0.1")


def _pkcs8(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def ensure_ca(directory: Path, common_name: str = "Concord local CA") -> tuple[Path, Path]:
    """Return ``(ca.pem, ca-key.pem)`` in *directory*, creating the CA only if absent.

    An existing CA is reused so that every certificate issued from this directory
    chains to the same root that clients were already given.
    """
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / CA_CERT, directory / CA_KEY
    if cert_path.exists() and key_path.exists():
        load_ca(directory)
        return cert_path, key_path
    if cert_path.exists() or key_path.exists():
        raise ConfigError("incomplete local CA: remove it to regenerate", directory=directory)

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Concord local"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _CLOCK_SKEW)
        .not_valid_after(now + _CA_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    write_private(key_path, _pkcs8(key))
    write_atomic(cert_path, _cert_pem(cert))
    return cert_path, key_path


def load_ca(directory: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """Load the CA certificate and key, failing clearly if they are unusable."""
    try:
        cert = x509.load_pem_x509_certificate((directory / CA_CERT).read_bytes())
        key = serialization.load_pem_private_key((directory / CA_KEY).read_bytes(), password=None)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot load local CA: {exc}", directory=directory) from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ConfigError("local CA key is not an EC key", directory=directory)
    return cert, key


def _san(hosts: Sequence[str]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(names)


def issue_broker_cert(directory: Path, hosts: Sequence[str] = DEFAULT_HOSTS) -> Path:
    """Issue a fresh broker certificate for *hosts* and return the path of ``broker.pem``.

    Names that parse as IP addresses become IP SANs, the rest DNS SANs: clients
    connect to ``127.0.0.1`` and verify the address against the certificate.
    """
    return issue_server_cert(directory, hosts, BROKER_PEM)


def issue_server_cert(directory: Path, hosts: Sequence[str] = DEFAULT_HOSTS, filename: str = "server.pem") -> Path:
    """A server certificate for *hosts* from the CA in *directory*: key, certificate and CA in one file."""
    if not hosts:
        raise ConfigError("a server certificate needs at least one host name")
    return _issue(directory, hosts[0], ExtendedKeyUsageOID.SERVER_AUTH, directory / filename, hosts)


def issue_client_cert(directory: Path, name: str, out: Path) -> Path:
    """A client certificate whose subject common name is *name*, from the CA in *directory*, written
    to *out* (PKCS#8 key + certificate + CA, 0600): what one client system presents."""
    if not name:
        raise ConfigError("a client certificate needs a name")
    return _issue(directory, name, ExtendedKeyUsageOID.CLIENT_AUTH, out, ())


def _issue(directory: Path, common_name: str, usage: x509.ObjectIdentifier, out: Path, hosts: Sequence[str]) -> Path:
    if not (directory / CA_CERT).exists():
        ensure_ca(directory)
    ca_cert, ca_key = load_ca(directory)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Concord local"),
                    x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                ]
            )
        )
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _CLOCK_SKEW)
        .not_valid_after(min(now + _LEAF_LIFETIME, ca_cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=usage == ExtendedKeyUsageOID.SERVER_AUTH,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
    )
    if hosts:
        builder = builder.add_extension(_san(hosts), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    out.parent.mkdir(parents=True, exist_ok=True)
    write_private(out, _pkcs8(key) + _cert_pem(cert) + _cert_pem(ca_cert))
    return out
