"""Authentication and permissions: developer mode, API tokens, OpenID Connect JWTs."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from dicomweb_client import DICOMwebClient
from tests.web.conftest import make_study, multipart_body, node_settings, part10, root_of

from isthmus.config import ConfigError, Settings
from isthmus.server import Node, check_security
from isthmus.web.auth import Authenticator, hash_token
from isthmus.web.errors import HTTPError

ISSUER, AUDIENCE = "https://login.example.org/realms/pacs", "isthmus"
TOKENS = {
    "reader": {"hash": hash_token("reader-secret"), "permissions": ["read"]},
    "writer": {"hash": hash_token("writer-secret"), "permissions": ["read", "write"]},
    "boss": {"hash": hash_token("boss-secret"), "permissions": ["admin"]},
}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def number(value: int) -> str:
    return b64(value.to_bytes((value.bit_length() + 7) // 8, "big"))


class Issuer:
    """An OpenID provider's signing keys, made up for the test (no network)."""

    def __init__(self, folder: Path) -> None:
        self.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.ec = ec.generate_private_key(ec.SECP256R1())
        rsa_public = self.rsa.public_key().public_numbers()
        ec_public = self.ec.public_key().public_numbers()
        self.jwks = folder / "jwks.json"
        self.jwks.write_text(
            json.dumps(
                {
                    "keys": [
                        {
                            "kty": "RSA",
                            "kid": "r1",
                            "use": "sig",
                            "n": number(rsa_public.n),
                            "e": number(rsa_public.e),
                        },
                        {
                            "kty": "EC",
                            "kid": "e1",
                            "crv": "P-256",
                            "x": b64(ec_public.x.to_bytes(32, "big")),
                            "y": b64(ec_public.y.to_bytes(32, "big")),
                        },
                    ]
                }
            )
        )

    def rsa_public_pem(self) -> bytes:
        return self.rsa.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def token(
        self,
        alg: str = "RS256",
        kid: str | None = "r1",
        hmac_secret: bytes = b"",
        **claims: Any,
    ) -> str:
        """A token signed with the issuer's keys; `hmac_secret` signs an HS256 one (the
        algorithm confusion attack signs with the issuer's public key as the secret).
        A claim given as None is left out."""
        now = int(time.time())
        body = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": "alice",
            "iat": now,
            "exp": now + 300,
            **claims,
        }
        body = {name: value for name, value in body.items() if value is not None}
        header = {"alg": alg, "typ": "JWT"} | ({"kid": kid} if kid is not None else {})
        head = b64(json.dumps(header).encode())
        payload = b64(json.dumps(body).encode())
        signed = f"{head}.{payload}".encode()
        if alg == "RS256":
            signature = self.rsa.sign(signed, padding.PKCS1v15(), hashes.SHA256())
        elif alg == "PS256":
            signature = self.rsa.sign(
                signed,
                padding.PSS(padding.MGF1(hashes.SHA256()), hashes.SHA256.digest_size),
                hashes.SHA256(),
            )
        elif alg == "HS256":
            signature = hmac.new(hmac_secret, signed, hashlib.sha256).digest()
        elif alg == "ES256":
            r, s = decode_dss_signature(self.ec.sign(signed, ec.ECDSA(hashes.SHA256())))
            signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
        else:
            signature = b""
        return f"{head}.{payload}.{b64(signature)}"


@pytest.fixture(scope="module")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> Issuer:
    return Issuer(tmp_path_factory.mktemp("issuer"))


@pytest.fixture(scope="module")
def secured(tmp_path_factory, issuer) -> Iterator[Node]:
    """A node with API tokens and an OIDC issuer configured."""
    settings = node_settings(
        tmp_path_factory.mktemp("secured"),
        tokens=TOKENS,
        oidc_issuer=ISSUER,
        oidc_audience=AUDIENCE,
        oidc_jwks_file=str(issuer.jwks),
    )
    with Node(settings) as node:
        yield node


def call(node: Node, method: str, path: str, token: str | None = None, **kwargs: Any):
    headers = kwargs.pop("headers", {})
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return httpx.request(method, root_of(node) + path, headers=headers, timeout=30, **kwargs)


def stow(node: Node, token: str | None):
    body = multipart_body([("application/dicom", part10(make_study(instances_per_series=1)[0]))])
    return call(
        node,
        "POST",
        "/studies",
        token,
        content=body,
        headers={"Content-Type": 'multipart/related; type="application/dicom"; boundary=b0undary'},
    )


def test_loopback_without_users_is_developer_mode(fresh_node):
    assert stow(fresh_node, None).status_code == 200
    assert call(fresh_node, "GET", "/studies").status_code == 200


def test_no_credentials_is_401_with_a_challenge(secured):
    response = call(secured, "GET", "/studies")
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.json()["message"]


def test_unknown_token_is_401(secured):
    assert call(secured, "GET", "/studies", "guess").status_code == 401
    assert (
        call(secured, "GET", "/studies", headers={"Authorization": "Basic dTpw"}).status_code == 401
    )


def test_read_permission_reads_but_does_not_write_or_delete(secured):
    assert call(secured, "GET", "/studies", "reader-secret").status_code in (200, 204)
    refused = stow(secured, "reader-secret")
    assert refused.status_code == 403 and "write" in refused.json()["message"]
    assert call(secured, "DELETE", "/studies/1.2.3", "reader-secret").status_code == 403


def test_write_and_admin_permissions(secured):
    assert stow(secured, "writer-secret").status_code == 200
    assert call(secured, "DELETE", "/studies/1.2.3", "writer-secret").status_code == 403
    assert call(secured, "DELETE", "/studies/1.2.3", "boss-secret").status_code == 404


def test_wado_uri_and_capabilities_are_protected_too(secured):
    assert httpx.get(f"http://127.0.0.1:{secured.http_port}/wado").status_code == 401
    assert call(secured, "OPTIONS", "/studies").status_code == 401


def test_health_stays_open(secured):
    assert httpx.get(f"http://127.0.0.1:{secured.http_port}/health").status_code == 200


def test_dicomweb_client_with_a_bearer_token(secured):
    session = requests.Session()
    session.headers["Authorization"] = "Bearer writer-secret"
    client = DICOMwebClient(root_of(secured), session=session)
    ds = make_study(instances_per_series=1)[0]
    client.store_instances([ds])
    assert client.search_for_studies(search_filters={"StudyInstanceUID": ds.StudyInstanceUID})


@pytest.mark.parametrize("alg, kid", [("RS256", "r1"), ("ES256", "e1")])
def test_oidc_token_grants_default_read(secured, issuer, alg, kid):
    token = issuer.token(alg, kid)
    assert call(secured, "GET", "/studies", token).status_code in (200, 204)
    assert stow(secured, token).status_code == 403


def test_oidc_permissions_claim(secured, issuer):
    assert stow(secured, issuer.token(permissions=["read", "write"])).status_code == 200


@pytest.mark.parametrize(
    "claims, alg, words",
    [
        ({"exp": int(time.time()) - 3600}, "RS256", "expired"),
        ({"aud": "someone-else"}, "RS256", "audience"),
        ({"iss": "https://evil.example"}, "RS256", "issuer"),
        ({}, "none", "algorithm"),
        ({}, "HS256", "algorithm"),
    ],
)
def test_oidc_bad_tokens_are_401(secured, issuer, claims, alg, words):
    response = call(secured, "GET", "/studies", issuer.token(alg, **claims))
    assert response.status_code == 401
    assert words in response.json()["message"]


def test_tampered_oidc_token_is_401(secured, issuer):
    head, payload, signature = issuer.token().split(".")
    forged = b64(
        json.dumps(
            {"iss": ISSUER, "aud": AUDIENCE, "exp": int(time.time()) + 60, "permissions": ["admin"]}
        ).encode()
    )
    response = call(secured, "GET", "/studies", f"{head}.{forged}.{signature}")
    assert response.status_code == 401 and "signature" in response.json()["message"]


def test_tokens_are_kept_hashed_and_checked():
    with pytest.raises(ConfigError):
        Authenticator(Settings(tokens={"x": {"hash": "plain-token", "permissions": ["read"]}}))
    with pytest.raises(ConfigError):
        Authenticator(Settings(tokens={"x": {"hash": hash_token("t"), "permissions": ["root"]}}))
    auth = Authenticator(Settings(tokens=TOKENS))
    assert not auth.developer_mode
    assert auth.require("Bearer boss-secret", "delete").name == "boss"


def test_beyond_loopback_needs_authentication(issuer):
    with pytest.raises(ConfigError):
        check_security(Settings(host="0.0.0.0"))
    check_security(Settings(host="0.0.0.0", tokens=TOKENS))
    check_security(
        Settings(
            host="0.0.0.0",
            oidc_issuer=ISSUER,
            oidc_audience=AUDIENCE,
            oidc_jwks_file=str(issuer.jwks),
        )
    )
    assert not Authenticator(Settings(host="0.0.0.0", tokens=TOKENS)).developer_mode


def test_oidc_needs_audience_and_keys():
    with pytest.raises(ConfigError):
        Authenticator(Settings(oidc_issuer=ISSUER))


@pytest.mark.parametrize("alg, kid", [("RS256", "r1"), ("PS256", "r1"), ("ES256", "e1")])
def test_oidc_algorithms_of_each_key(issuer, alg, kid):
    auth = Authenticator(oidc_settings(issuer))
    assert auth.require(f"Bearer {issuer.token(alg, kid)}", "read").name == "alice"


def oidc_settings(issuer: Issuer, **changes: Any) -> Settings:
    values: dict[str, Any] = {
        "oidc_issuer": ISSUER,
        "oidc_audience": AUDIENCE,
        "oidc_jwks_file": str(issuer.jwks),
    }
    return Settings(**(values | changes))


def rejected(auth: Authenticator, token: str) -> str:
    """The 401 message for a token the authenticator must refuse."""
    with pytest.raises(HTTPError) as refused:
        auth.require(f"Bearer {token}", "read")
    assert refused.value.status == 401
    return refused.value.message


def test_hmac_signed_with_the_public_key_is_refused(secured, issuer):
    """Algorithm confusion: HS256 keyed with the issuer's public RSA key (PEM or the JWK's
    modulus), which anybody can download, must not pass as the issuer's signature."""
    for secret in (issuer.rsa_public_pem(), json.loads(issuer.jwks.read_text())["keys"][0]["n"]):
        secret = secret if isinstance(secret, bytes) else secret.encode()
        for kid in ("r1", None):
            response = call(secured, "GET", "/studies", issuer.token("HS256", kid, secret))
            assert response.status_code == 401
            assert "algorithm" in response.json()["message"]


def test_algorithm_must_fit_the_key(issuer):
    auth = Authenticator(oidc_settings(issuer))
    # An RS256 header naming the EC key, and an ES256 header naming the RSA key.
    assert "does not fit" in rejected(auth, issuer.token("RS256", "e1"))
    assert "does not fit" in rejected(auth, issuer.token("ES256", "r1"))


def test_key_not_in_the_jwks_is_refused(issuer, tmp_path):
    auth = Authenticator(oidc_settings(issuer))
    assert "unknown key id" in rejected(auth, issuer.token("RS256", "rotated-away"))
    # No kid, and the issuer has two keys: which one is not guessed.
    assert "no key id" in rejected(auth, issuer.token("RS256", None))
    # Signed by another issuer's key under a kid of ours: the signature fails.
    other = Issuer(tmp_path)
    assert "signature" in rejected(auth, other.token("RS256", "r1"))


def test_single_key_without_kid(issuer, tmp_path):
    document = json.loads(issuer.jwks.read_text())
    jwks = tmp_path / "one.json"
    jwks.write_text(json.dumps({"keys": [dict(document["keys"][0], kid=None)]}))
    auth = Authenticator(oidc_settings(issuer, oidc_jwks_file=str(jwks)))
    assert auth.require(f"Bearer {issuer.token('RS256', None)}", "read").name == "alice"


def test_expiry_and_not_before_with_leeway(issuer):
    auth = Authenticator(oidc_settings(issuer))
    now = int(time.time())
    assert auth.require(f"Bearer {issuer.token(exp=now - 30)}", "read")
    assert auth.require(f"Bearer {issuer.token(nbf=now + 30)}", "read")
    assert "expired" in rejected(auth, issuer.token(exp=now - 120))
    assert "not valid yet" in rejected(auth, issuer.token(nbf=now + 600))
    assert "no expiry" in rejected(auth, issuer.token(exp=None))
    assert "audience" in rejected(auth, issuer.token(aud=["other", "more"]))
    assert auth.require(f"Bearer {issuer.token(aud=['other', AUDIENCE])}", "read")
    assert "issuer" in rejected(auth, issuer.token(iss=None))
    assert "not a JWT" in rejected(auth, "a.b.c")


def test_jwks_with_a_symmetric_key_is_refused(issuer, tmp_path):
    """An "oct" key would turn the JWKS into a shared secret: the file is not usable."""
    jwks = tmp_path / "oct.json"
    jwks.write_text(json.dumps({"keys": [{"kty": "oct", "kid": "h1", "k": b64(b"secret")}]}))
    with pytest.raises(ConfigError, match="unsupported key type"):
        Authenticator(oidc_settings(issuer, oidc_jwks_file=str(jwks)))
    jwks.write_text(
        json.dumps({"keys": [dict(json.loads(issuer.jwks.read_text())["keys"][0], alg="HS256")]})
    )
    with pytest.raises(ConfigError, match="not accepted"):
        Authenticator(oidc_settings(issuer, oidc_jwks_file=str(jwks)))
