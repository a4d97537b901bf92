"""The check API over TLS, and who the client certificate says the caller is.

The server presents a certificate issued by the agency's own CA and asks every
caller for one (``CERT_OPTIONAL``: a caller with an API key instead may come without).
The TLS handshake itself refuses a certificate the agency's CA did not issue, so
what reaches the application is a verified chain or none.

uvicorn does not put the peer certificate in the ASGI scope, so
:class:`TLSHttpProtocol` — uvicorn's own httptools protocol, which ``Config(http=...)``
accepts in place of its default — reads it once per connection, when the handshake is
done, and adds the ASGI TLS extension (``scope["extensions"]["tls"]``:
``client_cert_name``, ``client_cert_chain``, ``tls_version``) to each request of
that connection.  ``client_cert_name`` is the subject's common name: the name the
clients file gives the client's certificate.
"""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.x509.oid import NameOID
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["TLSHttpProtocol", "peer_identity", "server_context"]


def server_context(certfile: Path, client_ca: Path) -> ssl.SSLContext:
    """TLS 1.2+ with the server's key and chain in ``certfile``; client certificates from ``client_ca``."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(certfile))
    ctx.load_verify_locations(cafile=str(client_ca))
    ctx.verify_mode = ssl.CERT_OPTIONAL
    return ctx


def peer_identity(transport: asyncio.BaseTransport) -> dict[str, Any] | None:
    """The ASGI TLS extension for a connection, or None if it is not TLS."""
    obj = transport.get_extra_info("ssl_object")
    if not isinstance(obj, ssl.SSLObject | ssl.SSLSocket):
        return None
    der = obj.getpeercert(binary_form=True)
    name = None
    chain: list[str] = []
    if der:
        cert = x509.load_der_x509_certificate(der)
        names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        name = str(names[0].value) if names else None
        chain = [ssl.DER_cert_to_PEM_cert(der)]
    return {
        "client_cert_name": name,
        "client_cert_chain": chain,
        "client_cert_error": None,
        "tls_version": obj.version(),
        "cipher_suite": None,
        "server_cert": None,
    }


class TLSHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, adding the ASGI TLS extension to every request's scope."""

    _tls: dict[str, Any] | None = None

    # uvicorn declares this with asyncio.Transport, narrower than asyncio.Protocol's BaseTransport.
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]  # as uvicorn
        super().connection_made(transport)
        self._tls = peer_identity(transport)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._tls is not None:
            extensions: dict[str, Any] = {"tls": self._tls}
            self.scope["extensions"] = extensions
