"""Audit messages to a syslog collector: RFC 5424 messages over TLS (RFC 5425) or UDP (RFC 5426).

PS3.15 A.5 and IHE ATNA carry audit messages in syslog: facility 10 (security/
authorization), severity 5 (notice), so PRI 85; APP-NAME "isthmus", MSGID
"DICOM+RFC3881"; the message is the XML, UTF-8 with a BOM (RFC 5424 6.4).  Over TLS each
message is framed by octet counting, ``MSG-LEN SP SYSLOG-MSG`` (RFC 5425 4.3); over UDP
each goes in one datagram (RFC 5426 3.1).

Configuration: ``audit_syslog = "tls://host:6514"`` or ``"udp://host:514"``; for TLS the
collector's certificate is verified against ``audit_syslog_ca`` (the system's trust
store when empty) and its host name, and ``audit_syslog_cert``/``_key`` give ours when
the collector asks for one (RFC 5425 5.1).  A collector that cannot be reached costs the
message its syslog copy only: the local log (logfile.py) is written first.
"""

from __future__ import annotations

import logging
import os
import socket
import ssl
from urllib.parse import urlparse

from isthmus.node.tls import BCP195_CIPHERS

log = logging.getLogger(__name__)

PRI = 10 * 8 + 5  # facility security/authorization, severity notice
APP_NAME = "isthmus"
MSG_ID = "DICOM+RFC3881"
BOM = "\ufeff"
MAX_DATAGRAM = 65_507  # UDP over IPv4


def frame(xml: str, time: str, hostname: str | None = None) -> bytes:
    """One RFC 5424 SYSLOG-MSG: HEADER SP STRUCTURED-DATA ("-") SP MSG."""
    host = (hostname or socket.gethostname() or "-").split(".")[0][:255] or "-"
    header = f"<{PRI}>1 {time} {host} {APP_NAME} {os.getpid()} {MSG_ID} -"
    return f"{header} {BOM}{xml}".encode()


def octet_counted(message: bytes) -> bytes:
    """RFC 5425 4.3 (and RFC 6587 3.4.1): the length in decimal, a space, the message."""
    return b"%d " % len(message) + message


class SyslogSender:
    """Sends framed messages to one collector; reconnects (TLS) after a failure."""

    def __init__(
        self,
        url: str,
        ca_file: str = "",
        cert_file: str = "",
        key_file: str = "",
    ) -> None:
        parsed = urlparse(url)
        if parsed.scheme not in ("udp", "tls") or not parsed.hostname or not parsed.port:
            raise ValueError(f"audit_syslog {url!r}: use udp://HOST:PORT or tls://HOST:PORT")
        self.scheme = parsed.scheme
        self.address = (parsed.hostname, parsed.port)
        self._context: ssl.SSLContext | None = None
        if self.scheme == "tls":
            context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca_file or None)
            # BCP 195 as on the DICOM TLS port (RFC 9325 4.2): TLS 1.2+, AEAD suites only
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            context.set_ciphers(BCP195_CIPHERS)
            context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
            if cert_file:
                context.load_cert_chain(cert_file, key_file or None)
            self._context = context
        self._sock: socket.socket | None = None

    def send(self, messages: list[bytes]) -> bool:
        """Send every message; False (and a warning) when the collector cannot have them."""
        try:
            if self.scheme == "udp":
                self._send_udp(messages)
            else:
                self._send_tls(messages)
            return True
        except OSError as exc:
            log.warning("audit: syslog collector %s:%d: %s", *self.address, exc)
            self.close()
            return False

    def _send_udp(self, messages: list[bytes]) -> None:
        if self._sock is None:
            family = socket.getaddrinfo(*self.address, type=socket.SOCK_DGRAM)[0][0]
            self._sock = socket.socket(family, socket.SOCK_DGRAM)
        for message in messages:
            if len(message) > MAX_DATAGRAM:
                log.warning("audit: message of %d bytes too large for UDP syslog", len(message))
                continue
            self._sock.sendto(message, self.address)

    def _send_tls(self, messages: list[bytes]) -> None:
        data = b"".join(octet_counted(m) for m in messages)
        for attempt in (1, 2):  # a connection the collector closed is opened again once
            try:
                if self._sock is None:
                    self._sock = self._connect()
                self._sock.sendall(data)
                return
            except OSError:
                self.close()
                if attempt == 2:
                    raise

    def _connect(self) -> socket.socket:
        assert self._context is not None
        raw = socket.create_connection(self.address, timeout=10)
        try:
            return self._context.wrap_socket(raw, server_hostname=self.address[0])
        except BaseException:
            raw.close()
            raise

    def close(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass
            self._sock = None
