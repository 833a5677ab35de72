"""The TLS context a transport connects to an ``mqtts://`` broker with, built from a ``BrokerAddress``.

Both transports use it, so the rules are the same for each: the broker's certificate is verified
(against ``$DORMANT_BROKER_CA_FILE``, or the system's trust store when it is unset) and must name the
host of the URL; TLS 1.2 is the oldest version spoken; a client certificate
(``$DORMANT_BROKER_CERT_FILE``, its key in ``$DORMANT_BROKER_KEY_FILE`` or in the same file) is
presented when the broker asks for one. The files are read at every connect, so a renewed certificate
is picked up by the next reconnect.
"""

from __future__ import annotations

import ssl

from ..config import BrokerAddress
from ._base import TransportError


def tls_context(address: BrokerAddress) -> ssl.SSLContext | None:
    """The context for ``address`` (None for a plain ``mqtt://`` one); ``TransportError`` when a
    file cannot be read or is not what it should be."""
    if not address.tls:
        return None
    try:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=address.ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise TransportError(f"cannot read the broker CA file {address.ca_file}: {exc}") from exc
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if address.cert_file is not None:
        try:
            context.load_cert_chain(address.cert_file, address.key_file, password=_no_passphrase)
        except (OSError, ssl.SSLError, ValueError) as exc:
            files = address.cert_file + (f" and {address.key_file}" if address.key_file else "")
            raise TransportError(f"cannot load the client certificate {files}: {exc}") from exc
    return context


def _no_passphrase() -> str:
    # Without a callback OpenSSL would prompt on the terminal for an encrypted key's passphrase.
    raise ValueError("the key is encrypted (use an unencrypted key file, readable by its owner only)")
