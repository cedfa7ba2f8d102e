"""`isthmus serve`'s HTTP door speaks HTTPS when given a certificate (wss:// follows)."""

from __future__ import annotations

import datetime as dt
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


def test_a_certificate_without_its_key_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="tls_cert and tls_key"):
        load(env={"ISTHMUS_TLS_CERT": "/etc/ssl/cert.pem"})
