"""`isthmus serve`'s HTTP door speaks HTTPS when given a certificate (wss:// follows)."""

from __future__ import annotations

import datetime as dt
import socket
import ssl
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from isthmus.config import ConfigError, Settings, load
from isthmus.node.tls import BCP195_CIPHERS
from isthmus.server import Node


def _self_signed(folder: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    import ipaddress

    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
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
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_http_door_serves_https_with_the_configured_certificate(
    settings: Settings, tmp_path: Path
) -> None:
    cert, key = _self_signed(tmp_path)
    with Node(replace(settings, tls_cert=str(cert), tls_key=str(key))) as node:
        context = ssl.create_default_context(cafile=str(cert))
        response = httpx.get(f"https://127.0.0.1:{node.http_port}/health", verify=context)
        assert response.status_code == 200 and response.json()["status"] == "ok"
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{node.http_port}/health", timeout=5)


def _handshake(port: int, context: ssl.SSLContext) -> tuple[str | None, str]:
    """TLS version and cipher suite the HTTPS door agrees to with `context`."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as conn:
            return conn.version(), conn.cipher()[0]  # type: ignore[index]


def _client(cert: Path, ciphers: str, version: ssl.TLSVersion) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(cert))
    context.set_ciphers(ciphers)
    context.minimum_version = context.maximum_version = version
    return context


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated")
def test_https_door_has_the_bcp195_profile_of_the_dicom_tls_port(
    settings: Settings, tmp_path: Path
) -> None:
    """RFC 9325 (BCP 195) 3.1 and 4.2, as on the DICOM TLS port (PS3.15 B.9): TLS 1.2 or
    later, and for TLS 1.2 only ECDHE/DHE with AEAD ciphers; CBC suites are refused."""
    cert, key = _self_signed(tmp_path)
    with Node(replace(settings, tls_cert=str(cert), tls_key=str(key))) as node:
        port = node.http_port
        version, cipher = _handshake(port, _client(cert, "DEFAULT", ssl.TLSVersion.TLSv1_2))
        assert version == "TLSv1.2" and cipher in BCP195_CIPHERS.split(":")
        for weak in ("ECDHE-ECDSA-AES128-SHA256", "ECDHE-ECDSA-AES256-SHA384"):  # CBC
            with pytest.raises((ssl.SSLError, ConnectionError)):
                _handshake(port, _client(cert, weak, ssl.TLSVersion.TLSv1_2))
        old = _client(cert, "DEFAULT:@SECLEVEL=0", ssl.TLSVersion.TLSv1_1)
        with pytest.raises((ssl.SSLError, ConnectionError)):
            _handshake(port, old)


def test_a_certificate_without_its_key_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="tls_cert and tls_key"):
        load(env={"ISTHMUS_TLS_CERT": "/etc/ssl/cert.pem"})
