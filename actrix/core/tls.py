"""Server TLS from PEM files: TLS 1.2+, modern ciphers, reloadable in place.

One :class:`ServerTLS` per certificate pair is shared by every TLS listener that
uses it (HTTPS/WSS, TURN over TLS). :meth:`ServerTLS.reload` swaps the context for
new connections only; live sessions keep theirs, and a broken file leaves the old
context in service.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from OpenSSL import SSL
from twisted.internet.interfaces import IOpenSSLServerConnectionCreator
from twisted.logger import Logger
from zope.interface import implementer

log = Logger()

CIPHERS: Final = (
    b"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    b"ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    b"ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
)


class TLSConfigError(Exception):
    """A certificate or key file is missing, unreadable or does not match."""


def build_context(cert: Path, key: Path) -> SSL.Context:
    """An OpenSSL server context for ``cert`` (chain PEM) and ``key``.

    Raises:
        TLSConfigError: naming the file that could not be used.
    """
    for label, path in (("cert", cert), ("key", key)):
        if not path.is_file():
            raise TLSConfigError(f"{label} file {path} does not exist")
    ctx = SSL.Context(SSL.TLS_SERVER_METHOD)
    ctx.set_min_proto_version(SSL.TLS1_2_VERSION)
    ctx.set_options(
        SSL.OP_NO_COMPRESSION | SSL.OP_CIPHER_SERVER_PREFERENCE | SSL.OP_NO_TICKET
    )
    ctx.set_cipher_list(CIPHERS)
    try:
        ctx.use_certificate_chain_file(str(cert))
    except (SSL.Error, OSError) as e:
        raise TLSConfigError(f"cert file {cert} is not a usable PEM chain") from e
    try:
        ctx.use_privatekey_file(str(key))
        ctx.check_privatekey()
    except (SSL.Error, OSError) as e:
        raise TLSConfigError(
            f"key file {key} is not usable or does not match {cert}"
        ) from e
    return ctx


@implementer(IOpenSSLServerConnectionCreator)
class ServerTLS:
    """A server TLS configuration whose certificate can be reloaded."""

    def __init__(self, cert: Path, key: Path) -> None:
        self.cert = cert
        self.key = key
        self._context = build_context(cert, key)

    def serverConnectionForTLS(self, tlsProtocol: object) -> SSL.Connection:
        return SSL.Connection(self._context, None)

    def reload(self) -> bool:
        """Re-read the files; on failure log it and keep the old context."""
        try:
            self._context = build_context(self.cert, self.key)
        except TLSConfigError as e:
            log.error(
                "TLS reload failed, keeping the old certificate: {reason}",
                reason=str(e),
            )
            return False
        log.info("TLS certificate reloaded from {cert}", cert=str(self.cert))
        return True
