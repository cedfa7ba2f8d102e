"""Audit messages to a syslog collector the test runs: RFC 5424 messages, octet-counted
over TLS (RFC 5425) and one per datagram over UDP (RFC 5426), each holding a DICOM
audit message valid against PS3.15 A.5.1."""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pynetdicom import AE

from isthmus.audit import Filter, search
from isthmus.audit.syslog import SyslogSender, frame, octet_counted
from isthmus.config import Settings
from isthmus.server import Node
from isthmus.testing.net import free_port

from .schema import check, code

# RFC 5424 6: <PRI>VERSION SP TIMESTAMP SP HOSTNAME SP APP-NAME SP PROCID SP MSGID SP SD SP MSG
SYSLOG = re.compile(
    rb"^<85>1 (?P<time>\S+) (?P<host>\S+) isthmus (?P<pid>\d+) DICOM\+RFC3881 - "
    rb"\xef\xbb\xbf(?P<xml><AuditMessage.*</AuditMessage>)$",
    re.DOTALL,
)


def certificate(folder: Path, name: str) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (its own trust anchor) and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / f"{name}.pem", folder / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


class TLSCollector:
    """A syslog collector over TLS: reads octet-counted frames (RFC 5425 4.3)."""

    def __init__(self, cert: Path, key: Path) -> None:
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert, key)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.messages: list[bytes] = []
        self.arrived = threading.Condition()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                raw, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._read, args=(raw,), daemon=True).start()

    def _read(self, raw: socket.socket) -> None:
        try:
            conn = self.context.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError):
            raw.close()
            return
        buffer = b""
        with conn:
            while chunk := conn.recv(65536):
                buffer += chunk
                while b" " in buffer:
                    length, _, rest = buffer.partition(b" ")
                    if len(rest) < int(length):
                        break
                    with self.arrived:
                        self.messages.append(rest[: int(length)])
                        self.arrived.notify_all()
                    buffer = rest[int(length) :]

    def wait_for(self, count: int, timeout: float = 20) -> list[bytes]:
        with self.arrived:
            self.arrived.wait_for(lambda: len(self.messages) >= count, timeout)
            return list(self.messages)

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def tls_cert(tmp_path: Path) -> tuple[Path, Path]:
    return certificate(tmp_path, "collector")


@pytest.fixture
def collector(tls_cert: tuple[Path, Path]) -> Iterator[TLSCollector]:
    server = TLSCollector(*tls_cert)
    yield server
    server.close()


def node_settings(folder: Path, **audit: str) -> Settings:
    return Settings(
        data=folder / "data",
        dicom_port=free_port(),
        http_port=free_port(),
        check_on_start=False,
        **audit,  # type: ignore[arg-type]
    )


def echo(node: Node, calling: str) -> None:
    ae = AE(calling)
    ae.add_requested_context("1.2.840.10008.1.1")
    assoc = ae.associate("127.0.0.1", node.dicom_port, ae_title="ISTHMUS")
    assert assoc.is_established
    assoc.send_c_echo()
    assoc.release()


def parsed(message: bytes) -> tuple[re.Match[bytes], str]:
    match = SYSLOG.match(message)
    assert match, message[:200]
    return match, match["xml"].decode("utf-8")


def test_octet_counting_frames_the_message_by_its_length_in_bytes() -> None:
    message = frame("<AuditMessage>é</AuditMessage>", "2026-01-01T00:00:00+00:00", "host")
    counted = octet_counted(message)
    length, _, rest = counted.partition(b" ")
    assert int(length) == len(rest) == len(message)
    assert rest.startswith(b"<85>1 2026-01-01T00:00:00+00:00 host isthmus ")


def test_tls_collector_receives_rfc5425_framed_audit_messages(
    tmp_path: Path, collector: TLSCollector, tls_cert: tuple[Path, Path]
) -> None:
    settings = node_settings(
        tmp_path,
        audit_syslog=f"tls://127.0.0.1:{collector.port}",
        audit_syslog_ca=str(tls_cert[0]),
    )
    with Node(settings) as node:
        echo(node, "SYSLOGTEST")
        node.audit.flush()
        messages = collector.wait_for(2)
    messages = collector.wait_for(3)  # and Application Stop, sent as the node stopped
    events = []
    for message in messages:
        match, xml = parsed(message)
        doc = check(xml)
        events.append(code(doc, "EventIdentification/EventID")[2])
        assert dt.datetime.fromisoformat(match["time"].decode()).tzinfo is not None
    assert events[0] == "Application Activity"
    assert "User Authentication" in events  # the association
    assert events[-1] == "Application Activity"
    assert len(messages) == len(list(search(settings.data / "audit.log", Filter(limit=100))))


def test_udp_collector_receives_one_audit_message_per_datagram(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as receiver:
        receiver.bind(("127.0.0.1", 0))
        receiver.settimeout(20)
        port = receiver.getsockname()[1]
        settings = node_settings(tmp_path, audit_syslog=f"udp://127.0.0.1:{port}")
        with Node(settings) as node:
            echo(node, "UDPTEST")
            node.audit.flush()
            datagrams = [receiver.recv(65535) for _ in range(2)]
    users = []
    for datagram in datagrams:
        _, xml = parsed(datagram)
        doc = check(xml)
        users += [p.get("UserID") for p in doc.findall("ActiveParticipant")]
    assert "UDPTEST" in users


def test_a_collector_with_an_untrusted_certificate_gets_nothing_and_the_log_keeps_all(
    tmp_path: Path, collector: TLSCollector
) -> None:
    other, _ = certificate(tmp_path, "someone-else")
    settings = node_settings(
        tmp_path,
        audit_syslog=f"tls://127.0.0.1:{collector.port}",
        audit_syslog_ca=str(other),
    )
    with Node(settings) as node:
        echo(node, "UNTRUSTED")
        node.audit.flush()
    assert collector.messages == []
    users = [e["user"] for e in search(settings.data / "audit.log", Filter(event="association"))]
    assert users == ["UNTRUSTED"]


def test_syslog_urls_other_than_tls_and_udp_are_refused() -> None:
    for url in ("tcp://127.0.0.1:514", "udp://127.0.0.1", "tls://:6514"):
        with pytest.raises(ValueError, match="udp://HOST:PORT or tls://HOST:PORT"):
            SyslogSender(url)


def test_a_collector_offering_only_cbc_suites_gets_nothing(
    tmp_path: Path, tls_cert: tuple[Path, Path]
) -> None:
    """The audit channel keeps to BCP 195 like the DICOM TLS port (RFC 9325 4.2, PS3.15
    B.9): a collector that would only negotiate TLS 1.2 with a CBC suite is refused."""
    weak = TLSCollector(*tls_cert)
    weak.context.maximum_version = ssl.TLSVersion.TLSv1_2
    weak.context.set_ciphers("ECDHE-ECDSA-AES128-SHA256:ECDHE-ECDSA-AES256-SHA384")
    try:
        sender = SyslogSender(f"tls://127.0.0.1:{weak.port}", ca_file=str(tls_cert[0]))
        assert not sender.send([frame("<AuditMessage/>", "2026-01-01T00:00:00+00:00")])
        sender.close()
        assert weak.messages == []
    finally:
        weak.close()
