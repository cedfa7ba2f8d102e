"""The TLS DICOM port (PS3.15 Annex B, BCP 195; docs/security.md, "DICOM TLS"): who is
let in, who is refused and how, and that refusals cost nothing to the other callers.

Clients are pynetdicom with an `ssl` context, Python's `ssl` and raw sockets; the
certificates come from a throw-away CA (`isthmus.testing.certs`).  DCMTK's TLS tools
are in tests/dimse/test_tls.py.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from audit import schema
from dimse.support import associate_rq, read_pdu
from isthmus import config
from isthmus.archive import Archive
from isthmus.audit.logfile import entries
from isthmus.config import ConfigError, Peer, Settings
from isthmus.dimse import scu
from isthmus.node.tls import BCP195_CIPHERS, client_context
from isthmus.server import Node, check_security
from isthmus.testing.certs import CertificateAuthority, Issued
from isthmus.testing.net import free_port, wait_for_port

VERIFICATION = "1.2.840.10008.1.1"
IMPLICIT_LE = "1.2.840.10008.1.2"
A_ASSOCIATE_RJ = 0x03


class PKI:
    """The CA of the site, the node's certificate, three clients' and a stranger's."""

    def __init__(self, folder: Path) -> None:
        self.ca = CertificateAuthority(folder)
        self.server = self.ca.issue("isthmus")
        self.ct01 = self.ca.issue("ct01")
        self.mr01 = self.ca.issue("mr01")
        self.other = self.ca.issue("workstation")
        self.rogue_ca = CertificateAuthority(folder / "rogue", "Rogue CA")
        self.rogue = self.rogue_ca.issue("ct01")  # same name, wrong issuer


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return PKI(tmp_path_factory.mktemp("pki"))


def tls_settings(pki: PKI, folder: Path, **changes: object) -> Settings:
    """A node with the plain and the TLS DICOM port; CT01 must use TLS and its
    certificate (by fingerprint), MR01 a certificate named mr01, PLAIN nothing."""
    peers = (
        Peer("CT01", "127.0.0.1", 104, tls=True, certificate=f"sha256:{pki.ct01.fingerprint}"),
        Peer("MR01", "127.0.0.1", 104, certificate="CN=mr01"),
        Peer("PLAIN", "127.0.0.1", 104),
    )
    settings = Settings(
        data=folder,
        index_url=f"sqlite:///{folder / 'index.sqlite'}",
        http_port=free_port(),
        dicom_port=free_port(),
        dicom_tls_port=free_port(),
        dicom_tls_cert=str(pki.server.cert),
        dicom_tls_key=str(pki.server.key),
        dicom_tls_ca=str(pki.ca.bundle),
        peers=peers,
        pdu_timeout=2.0,
    )
    return replace(settings, **changes)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def node(pki: PKI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    running = Node(tls_settings(pki, tmp_path_factory.mktemp("tls")))
    running.start(http=False)
    try:
        yield running
    finally:
        running.stop()


def client(pki: PKI, cert: Issued | None, ca: CertificateAuthority | None = None) -> ssl.SSLContext:
    """The client context Isthmus itself uses, with `cert` as client certificate."""
    settings = Settings(dicom_tls_ca=str((ca or pki.ca).bundle), dicom_tls_client_certs="none")
    if cert is not None:
        settings = replace(settings, dicom_tls_cert=str(cert.cert), dicom_tls_key=str(cert.key))
    return client_context(settings)


def tls_peer(node: Node) -> Peer:
    assert node.dicom_tls_port is not None
    return Peer(node.settings.aet, "127.0.0.1", node.dicom_tls_port, tls=True)


def plain_peer(node: Node) -> Peer:
    return Peer(node.settings.aet, "127.0.0.1", node.dicom_port)


def eventually(condition: Callable[[], bool], seconds: float = 10.0) -> bool:
    """Wait for a condition another thread makes true (not a speed check)."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def router_threads() -> int:
    """Threads serving connections (socketserver names them Thread-N (process_request_thread))."""
    return sum("process_request_thread" in t.name for t in threading.enumerate())


def serves_both_ports(node: Node, pki: PKI) -> bool:
    plain = scu.echo(plain_peer(node), "PLAIN")
    secure = scu.echo(tls_peer(node), "CT01", tls=client(pki, pki.ct01))
    return plain == 0 and secure == 0


# ------------------------------------------------------------ admitted over TLS
def test_peer_with_its_certificate_fingerprint_is_served_over_tls(node: Node, pki: PKI) -> None:
    assert scu.echo(tls_peer(node), "CT01", tls=client(pki, pki.ct01)) == 0


def test_peer_named_by_certificate_common_name_is_served(node: Node, pki: PKI) -> None:
    assert scu.echo(tls_peer(node), "MR01", tls=client(pki, pki.mr01)) == 0


def test_unknown_caller_without_client_certificate_is_served_when_certificates_are_optional(
    node: Node, pki: PKI
) -> None:
    assert scu.echo(tls_peer(node), "ANYONE", tls=client(pki, None)) == 0


def test_tls_connection_negotiates_tls_1_2_or_later_with_an_aead_cipher(
    node: Node, pki: PKI
) -> None:
    assert node.dicom_tls_port is not None
    context = client(pki, pki.ct01)
    with socket.create_connection(("127.0.0.1", node.dicom_tls_port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as conn:
            assert conn.version() in ("TLSv1.2", "TLSv1.3")
            name, _version, _bits = conn.cipher()  # type: ignore[misc]
            assert "GCM" in name or "CHACHA20" in name


def test_tls_1_2_client_gets_a_bcp195_cipher_suite(node: Node, pki: PKI) -> None:
    assert node.dicom_tls_port is not None
    context = client(pki, pki.ct01)
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    with socket.create_connection(("127.0.0.1", node.dicom_tls_port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as conn:
            assert conn.version() == "TLSv1.2"
            assert conn.cipher()[0] in BCP195_CIPHERS.split(":")  # type: ignore[index]


# ------------------------------------------------------------ refused cleanly
def rejection(node: Node, peer: Peer, calling: str, tls: ssl.SSLContext | None) -> str:
    with pytest.raises(scu.SCUError) as caught:
        scu.echo(peer, calling, tls=tls)
    return str(caught.value)


def test_peer_presenting_another_certificate_is_rejected(node: Node, pki: PKI) -> None:
    assert "rejected" in rejection(node, tls_peer(node), "CT01", client(pki, pki.other))
    assert "rejected" in rejection(node, tls_peer(node), "MR01", client(pki, pki.ct01))
    assert serves_both_ports(node, pki)


def test_peer_required_to_present_a_certificate_without_one_is_rejected(
    node: Node, pki: PKI
) -> None:
    assert "rejected" in rejection(node, tls_peer(node), "CT01", client(pki, None))
    assert serves_both_ports(node, pki)


def test_peer_required_to_use_tls_is_rejected_on_the_plain_port(node: Node, pki: PKI) -> None:
    assert "rejected" in rejection(node, plain_peer(node), "CT01", None)
    assert "rejected" in rejection(node, plain_peer(node), "MR01", None)
    assert scu.echo(plain_peer(node), "PLAIN") == 0


def test_rejection_on_the_tls_port_is_a_calling_ae_not_recognized_rj(node: Node, pki: PKI) -> None:
    """PS3.8 9.3.4: A-ASSOCIATE-RJ permanent, service user, reason 3, over the TLS session."""
    assert node.dicom_tls_port is not None
    context = client(pki, pki.other)
    with socket.create_connection(("127.0.0.1", node.dicom_tls_port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as conn:
            conn.sendall(associate_rq("ISTHMUS", "CT01", [(1, VERIFICATION, [IMPLICIT_LE])]))
            kind, body = read_pdu(conn)
    assert kind == A_ASSOCIATE_RJ
    assert tuple(body[1:4]) == (1, 1, 3)


def test_tls_caller_vanishing_without_release_ends_its_association_quietly(
    node: Node, pki: PKI, caplog: pytest.LogCaptureFixture
) -> None:
    """A TCP close without TLS close_notify or A-RELEASE: the association just ends."""
    assert node.dicom_tls_port is not None
    caplog.set_level(logging.INFO, logger="isthmus.dimse.acceptor")
    context = client(pki, pki.ct01)
    raw = socket.create_connection(("127.0.0.1", node.dicom_tls_port), timeout=10)
    conn = context.wrap_socket(raw, server_hostname="127.0.0.1")
    conn.sendall(associate_rq("ISTHMUS", "CT01", [(1, VERIFICATION, [IMPLICIT_LE])]))
    assert read_pdu(conn)[0] == 0x02  # A-ASSOCIATE-AC
    conn.close()  # Python's SSL sockets close without close_notify
    assert eventually(lambda: "ended without release" in caplog.text)
    assert "internal error" not in caplog.text
    assert serves_both_ports(node, pki)


def test_client_certificate_from_another_ca_fails_the_handshake(node: Node, pki: PKI) -> None:
    message = rejection(node, tls_peer(node), "ANYONE", client(pki, pki.rogue))
    assert "cannot reach" in message or "aborted" in message
    assert serves_both_ports(node, pki)


def test_handshakes_failing_on_the_client_certificate_are_audited_as_node_authentication_alerts(
    node: Node, pki: PKI
) -> None:
    """A certificate is the caller's credential on the TLS port (PS3.15 B.9): a refused
    one, from another CA or missing where required, is a Security Alert of type Node
    Authentication (PS3.15 A.5.3.11, CID 403 110126; IHE ATNA's node-authentication-
    failure), outcome 4, naming the node refused and the archive (docs/security.md,
    "Audit trail": a failed credential is always audited)."""
    required = Node(
        tls_settings(pki, node.settings.data / "required", dicom_tls_client_certs="required")
    )
    required.start(http=False)
    try:
        for cert in (pki.rogue, None):
            with pytest.raises(scu.SCUError):
                scu.echo(tls_peer(required), "ANYONE", tls=client(pki, cert))
        required.audit.flush()
        logged = list(entries(required.audit.log.path))
    finally:
        required.stop()
    refused = [e for e in logged if e["event"] == "security-alert"]
    assert len(refused) == 2, refused
    assert not [e for e in logged if e["event"] == "association" and e["outcome"] == 4]
    assert all(e["source"] == "127.0.0.1" and e["outcome"] == 4 for e in refused)
    assert "certificate verify failed" in refused[0]["xml"].lower()
    assert "did not return a certificate" in refused[1]["xml"].lower()
    for entry in refused:
        message = schema.check(entry["xml"])
        assert message.find("EventIdentification").get("EventActionCode") == "E"  # type: ignore[union-attr]
        assert schema.code(message, "EventIdentification/EventID")[0] == "110113"
        assert schema.code(message, "EventIdentification/EventTypeCode") == (
            "110126",
            "DCM",
            "Node Authentication",
        )
        who = {
            (p.get("UserID"), p.get("UserIsRequestor")) for p in message.iter("ActiveParticipant")
        }
        assert who == {("127.0.0.1", "true"), (required.audit.audit_source, "false")}


def test_client_refuses_a_server_whose_certificate_it_cannot_verify(node: Node, pki: PKI) -> None:
    with pytest.raises(scu.SCUError):
        scu.echo(tls_peer(node), "CT01", tls=client(pki, pki.ct01, ca=pki.rogue_ca))
    assert serves_both_ports(node, pki)


def test_plain_tcp_client_on_the_tls_port_is_dropped_and_both_ports_keep_serving(
    node: Node, pki: PKI
) -> None:
    assert node.dicom_tls_port is not None
    baseline = router_threads()
    with socket.create_connection(("127.0.0.1", node.dicom_tls_port), timeout=10) as sock:
        sock.sendall(associate_rq("ISTHMUS", "PLAIN", [(1, VERIFICATION, [IMPLICIT_LE])]))
        answer = b""
        try:
            while chunk := sock.recv(4096):  # a TLS alert at most, then the close
                answer += chunk
        except ConnectionResetError:
            pass
    assert not answer.startswith(b"\x02")  # never an A-ASSOCIATE-AC
    assert serves_both_ports(node, pki)
    assert eventually(lambda: router_threads() <= baseline)


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated")
def test_tls_1_1_client_is_refused(node: Node, pki: PKI) -> None:
    assert node.dicom_tls_port is not None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_ciphers("DEFAULT:@SECLEVEL=0")  # let this client offer TLS 1.1 at all
    context.minimum_version = ssl.TLSVersion.TLSv1_1
    context.maximum_version = ssl.TLSVersion.TLSv1_1
    with socket.create_connection(("127.0.0.1", node.dicom_tls_port), timeout=10) as raw:
        with pytest.raises(ssl.SSLError) as caught:
            context.wrap_socket(raw, server_hostname="127.0.0.1")
    assert "PROTOCOL_VERSION" in caught.value.reason or "UNSUPPORTED_PROTOCOL" in str(
        caught.value
    ), caught.value  # the server refused the version, the client did offer it
    assert serves_both_ports(node, pki)


def test_silent_client_holds_only_its_own_thread_and_is_dropped_after_pdu_timeout(
    node: Node, pki: PKI
) -> None:
    """The handshake runs in the connection's thread: accept goes on meanwhile."""
    assert node.dicom_tls_port is not None
    baseline = router_threads()
    with socket.create_connection(("127.0.0.1", node.dicom_tls_port), timeout=15) as silent:
        assert serves_both_ports(node, pki)  # while the silent one waits
        assert silent.recv(1) == b""  # closed by the node after pdu_timeout
    assert eventually(lambda: router_threads() <= baseline)


def test_routes_of_other_doors_are_not_served_on_the_tls_port(node: Node, pki: PKI) -> None:
    assert node.router is not None
    node.router.add_route("BROWSER", lambda sock, address, rq: sock.close())
    try:
        assert "rejected" in rejection(
            node, replace(tls_peer(node), aet="BROWSER"), "ANYONE", client(pki, None)
        )
    finally:
        node.router.remove_route("BROWSER")


def test_titles_another_process_holds_are_not_passed_on_from_the_tls_port(
    node: Node, pki: PKI, tmp_path: Path
) -> None:
    holder = socket.create_server(("127.0.0.1", 0))
    other = Archive(node.settings.resolved_index_url, f"file://{tmp_path / 'blobs'}")
    try:
        other.register_route("FARBROWSER", "127.0.0.1", holder.getsockname()[1])
        assert "rejected" in rejection(
            node, replace(tls_peer(node), aet="FARBROWSER"), "ANYONE", client(pki, None)
        )
    finally:
        other.close()
        holder.close()


# ------------------------------------------------------------ TLS only, required
def test_tls_only_node_has_no_plain_port(pki: PKI, tmp_path: Path) -> None:
    settings = tls_settings(pki, tmp_path, dicom_tls_only=True)
    with Node(settings) as running:
        assert running.dicom_port == running.dicom_tls_port == settings.dicom_tls_port
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", settings.dicom_port), timeout=5).close()
        assert scu.echo(tls_peer(running), "CT01", tls=client(pki, pki.ct01)) == 0


def test_required_client_certificates_refuse_a_client_without_one(pki: PKI, tmp_path: Path) -> None:
    settings = tls_settings(pki, tmp_path, dicom_tls_client_certs="required")
    running = Node(settings)
    running.start(http=False)
    try:
        with pytest.raises(scu.SCUError):
            scu.echo(tls_peer(running), "ANYONE", tls=client(pki, None))
        assert scu.echo(tls_peer(running), "ANYONE", tls=client(pki, pki.other)) == 0
    finally:
        running.stop()


# ------------------------------------------------------------ configuration
def test_serving_beyond_loopback_with_tls_still_needs_authentication(
    pki: PKI, tmp_path: Path
) -> None:
    """TLS secures the DICOM port; the HTTP door still needs tokens or OpenID Connect."""
    settings = tls_settings(pki, tmp_path, host="0.0.0.0", dicom_tls_client_certs="required")
    with pytest.raises(ConfigError, match="authentication"):
        check_security(settings)
    check_security(replace(settings, tokens={"x": {"hash": "sha256:" + "0" * 64}}))


def test_peers_with_tls_and_certificate_from_toml(pki: PKI, tmp_path: Path) -> None:
    path = tmp_path / "isthmus.toml"
    fingerprint = ":".join(pki.ct01.fingerprint[i : i + 2] for i in range(0, 64, 2))
    path.write_text(
        f"""
[dicom]
dicom_tls_cert = "{pki.server.cert}"
dicom_tls_key = "{pki.server.key}"
dicom_tls_ca = "{pki.ca.bundle}"
dicom_tls_client_certs = "required"
dicom_tls_port = 12762

[[dicom.peers]]
aet = "CT01"
host = "10.0.0.5"
port = 2762
tls = true
certificate = "SHA256:{fingerprint.upper()}"

[[dicom.peers]]
aet = "MR01"
host = "10.0.0.6"
port = 104
certificate = "CN=mr01"
"""
    )
    settings = config.load(path, env={})
    ct01, mr01 = settings.peers
    assert ct01.tls and not mr01.tls
    assert settings.dicom_tls_port == 12762 and settings.dicom_tls_client_certs == "required"
    local = replace(
        settings,
        data=tmp_path,
        http_port=free_port(),
        dicom_port=free_port(),
        dicom_tls_port=free_port(),
    )
    with Node(local) as running:
        assert scu.echo(tls_peer(running), "CT01", tls=client(pki, pki.ct01)) == 0


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"dicom_tls_only": True}, "dicom_tls_only"),
        ({"dicom_tls_cert": "x.pem"}, "go together"),
        ({"dicom_tls_client_certs": "maybe"}, "dicom_tls_client_certs"),
        (
            {"dicom_tls_cert": "c", "dicom_tls_key": "k", "dicom_tls_client_certs": "required"},
            "dicom_tls_ca",
        ),
        ({"peers": ["CT01@h:1"], "dicom_tls_cert": "c", "dicom_tls_key": "k"}, None),
    ],
)
def test_dicom_tls_settings_that_do_not_go_together_are_refused(
    changes: dict[str, object], message: str | None
) -> None:
    if message is None:
        config.load(env={}, **changes)  # a plain peer needs no CA
        return
    with pytest.raises(ConfigError, match=message):
        config.load(env={}, **changes)


def test_peer_certificate_needs_client_certificates_verified(tmp_path: Path) -> None:
    path = tmp_path / "isthmus.toml"
    path.write_text('peers = [{ aet = "CT01", host = "h", port = 1, certificate = "CN=ct01" }]\n')
    with pytest.raises(ConfigError, match="certificate"):
        config.load(path, env={})


def test_malformed_peer_certificate_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "isthmus.toml"
    path.write_text('peers = [{ aet = "CT01", host = "h", port = 1, certificate = "ab12" }]\n')
    with pytest.raises(ConfigError, match="sha256"):
        config.load(path, env={})


def test_missing_certificate_file_is_a_configuration_error(pki: PKI, tmp_path: Path) -> None:
    settings = tls_settings(pki, tmp_path, dicom_tls_cert=str(tmp_path / "missing.pem"))
    running = Node(settings)
    with pytest.raises(ConfigError, match="DICOM TLS"):
        running.start(http=False)
    running.stop()


def test_dicom_tls_settings_from_the_environment(pki: PKI) -> None:
    settings = config.load(
        env={
            "ISTHMUS_DICOM_TLS_PORT": "2763",
            "ISTHMUS_DICOM_TLS_CERT": str(pki.server.cert),
            "ISTHMUS_DICOM_TLS_KEY": str(pki.server.key),
            "ISTHMUS_DICOM_TLS_ONLY": "true",
        }
    )
    assert settings.dicom_tls_port == 2763 and settings.dicom_tls_only


def test_isthmus_serve_tls_only_from_flags(pki: PKI, tmp_path: Path) -> None:
    """`isthmus serve --dicom-tls-…` as users run it: only the TLS port, announced."""
    dicom_port, tls_port, http_port = free_port(), free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ISTHMUS_")}
    command = [sys.executable, "-m", "isthmus", "serve", "--data", str(tmp_path / "data")]
    command += ["--dicom-port", str(dicom_port), "--http-port", str(http_port)]
    command += ["--dicom-tls-port", str(tls_port), "--dicom-tls-only"]
    command += ["--dicom-tls-cert", str(pki.server.cert), "--dicom-tls-key", str(pki.server.key)]
    command += ["--dicom-tls-ca", str(pki.ca.bundle), "--dicom-tls-client-certs", "required"]
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    try:
        lines = []
        for line in proc.stdout:  # type: ignore[union-attr]
            lines.append(line)
            if "Press Ctrl+C" in line:
                break
        text = "".join(lines)
        assert f"DICOM TLS:     AE title ISTHMUS on 127.0.0.1:{tls_port}" in text, text
        assert "DICOM (DIMSE)" not in text
        wait_for_port(tls_port)
        peer = Peer("ISTHMUS", "127.0.0.1", tls_port, tls=True)
        assert scu.echo(peer, "ANYONE", tls=client(pki, pki.other)) == 0
        with pytest.raises(scu.SCUError):
            scu.echo(peer, "ANYONE", tls=client(pki, None))  # required
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", dicom_port), timeout=5).close()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        proc.stdout.close()  # type: ignore[union-attr]
