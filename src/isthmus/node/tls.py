"""DICOM over TLS: the contexts, the connection and the verified identity of a peer.

PS3.15 Annex B, the BCP 195 secure transport connection profiles: TLS 1.2
or later (RFC 8996 deprecates 1.0 and 1.1), and for TLS 1.2 only the cipher suites
RFC 9325 section 4.2 recommends: ephemeral (EC)DHE key exchange with AEAD ciphers
(AES-GCM; ChaCha20-Poly1305 as its section 4.2 allows).  TLS 1.3 suites are all AEAD
and are left as OpenSSL orders them.  No compression and no renegotiation (RFC 9325
3.3, 3.5).  All of it is Python's `ssl` (OpenSSL); nothing here is home-made.

Inbound and outbound sockets are `TLSConnection`, an `ssl.SSLSocket` that the
contexts made here create (`SSLContext.sslsocket_class`), for two things the DICOM
code needs from a socket: the association router reads the first PDU (an SSL
socket cannot be peeked at with MSG_PEEK) and hands it back with `replay`, so the
acceptor reads the A-ASSOCIATE-RQ as from a plain socket; and `sendmsg`, which an
SSL socket lacks, gathers buffers as `isthmus.dicom.ul.transport.send_all` expects.
"""

from __future__ import annotations

import hashlib
import ssl
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from isthmus.config import ConfigError, Peer, Settings

# RFC 9325 4.2 (TLS 1.2): ECDHE first (4.2.1), AEAD only.  OpenSSL names.
BCP195_CIPHERS = ":".join(
    (
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
        "DHE-RSA-AES128-GCM-SHA256",
        "DHE-RSA-AES256-GCM-SHA384",
    )
)
CLIENT_CERTS = {
    "none": ssl.CERT_NONE,
    "optional": ssl.CERT_OPTIONAL,
    "required": ssl.CERT_REQUIRED,
}
_GATHER = 256 * 1024  # bytes one emulated sendmsg gathers before it sends


class TLSConnection(ssl.SSLSocket):
    """An SSL socket whose first bytes can be put back, with a gathering `sendmsg`."""

    _replay: bytes = b""

    def replay(self, data: bytes) -> None:
        """Make `data` (bytes already read) the next bytes any recv returns."""
        self._replay = data + self._replay

    def recv_into(self, buffer: Any, nbytes: int | None = None, flags: int = 0) -> int:
        if self._replay:
            view = memoryview(buffer).cast("B")
            count = min(nbytes or len(view), len(view), len(self._replay))
            view[:count] = self._replay[:count]
            self._replay = self._replay[count:]
            return count
        return super().recv_into(buffer, nbytes, flags)

    def recv(self, buflen: int = 1024, flags: int = 0) -> bytes:
        if self._replay:
            data, self._replay = self._replay[:buflen], self._replay[buflen:]
            return data
        return super().recv(buflen, flags)

    def pending(self) -> int:
        """Decrypted bytes waiting (select() on the socket cannot see them)."""
        return len(self._replay) + super().pending()

    def sendmsg(self, buffers: Iterable[Any], *_args: Any) -> int:  # type: ignore[override]
        """Send a prefix of `buffers` (at least the first one); returns the bytes sent."""
        gathered = bytearray()
        for buf in buffers:
            view = memoryview(buf).cast("B")
            if not gathered and len(view) >= _GATHER:  # large: no copy
                self.sendall(view)
                return len(view)
            gathered += view
            if len(gathered) >= _GATHER:
                break
        self.sendall(gathered)
        return len(gathered)


@dataclass(frozen=True)
class PeerIdentity:
    """A verified client certificate: its subject's common name and SHA-256 fingerprint."""

    common_name: str
    fingerprint: str  # lowercase hex of SHA-256 over the DER certificate

    def __str__(self) -> str:
        return f"CN={self.common_name} sha256:{self.fingerprint[:16]}…"


def identity(sock: object) -> PeerIdentity | None:
    """The verified certificate of the peer on `sock`, or None (plain TCP, no certificate)."""
    if not isinstance(sock, ssl.SSLSocket):
        return None
    der = sock.getpeercert(binary_form=True)
    if not der:
        return None
    info: dict[str, Any] = dict(sock.getpeercert() or {})
    names = [pair[1] for rdn in info.get("subject", ()) for pair in rdn if pair[0] == "commonName"]
    return PeerIdentity(str(names[0]) if names else "", hashlib.sha256(der).hexdigest())


def certificate_matches(spec: str, peer: PeerIdentity) -> bool:
    """Does `peer` match a peer's `certificate` setting ("sha256:HEX" or "CN=name")?"""
    if spec.lower().startswith("sha256:"):
        return spec[7:].replace(":", "").replace(" ", "").lower() == peer.fingerprint
    if spec[:3].upper() == "CN=":
        return spec[3:] == peer.common_name
    return False


def _profile(context: ssl.SSLContext) -> ssl.SSLContext:
    """The BCP 195 profile on `context` (RFC 9325 3.1, 3.3, 3.5, 4.2)."""
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(BCP195_CIPHERS)
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    context.sslsocket_class = TLSConnection
    return context


def server_context(settings: Settings) -> ssl.SSLContext:
    """The TLS DICOM port's context: our certificate chain and key, and client
    certificates verified against `dicom_tls_ca` as `dicom_tls_client_certs` says."""
    context = _profile(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER))
    context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    try:
        context.load_cert_chain(settings.dicom_tls_cert, settings.dicom_tls_key)
        if settings.dicom_tls_ca:
            context.load_verify_locations(cafile=settings.dicom_tls_ca)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"DICOM TLS certificate, key or CA bundle: {exc}") from exc
    context.verify_mode = CLIENT_CERTS[settings.dicom_tls_client_certs]
    return context


def client_context(settings: Settings) -> ssl.SSLContext:
    """The context of every outgoing DICOM TLS association (C-MOVE sub-operations,
    forwarding jobs, reports, a relay transfer's delivery, the command line): the peer's certificate is verified
    against `dicom_tls_ca` (else the system's trust store) and its host name; our
    certificate, when configured, is presented to peers that require one."""
    context = _profile(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT))
    try:
        if settings.dicom_tls_ca:
            context.load_verify_locations(cafile=settings.dicom_tls_ca)
        else:
            context.load_default_certs()
        if settings.dicom_tls_cert:
            context.load_cert_chain(settings.dicom_tls_cert, settings.dicom_tls_key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"DICOM TLS certificate, key or CA bundle: {exc}") from exc
    return context


def peer_context(settings: Settings, peer: Peer) -> ssl.SSLContext | None:
    """The context to call `peer` with: `client_context` for a peer with `tls`, None for
    one called in plain TCP.  Raises ConfigError when our TLS files cannot be loaded."""
    return client_context(settings) if peer.tls else None
