"""A site's HTTP client of the bridge (relay/bridge.py is the other end).

Every request but `directory` is signed with the site's Ed25519 key (relay/signing.py);
every wait is bounded (connect 5 s, read/write 15 s).  The bridge's refusals come back
as `BridgeRefused` with its message and status; a bridge that cannot be reached, or
that failed, as `BridgeUnavailable`.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import httpx

from isthmus.relay.crypto import SiteIdentity
from isthmus.relay.directory import Export, SiteEntry
from isthmus.relay.signing import sign_request

TIMEOUT = httpx.Timeout(15.0, connect=5.0)

# httpx logs every request at INFO: a line per call to the bridge.
logging.getLogger("httpx").setLevel(logging.WARNING)


class BridgeError(Exception):
    """The bridge did not do what was asked."""


class BridgeRefused(BridgeError):
    """The bridge answered with a 4xx refusal: retrying will not help."""

    def __init__(self, status: int, message: str, detail: dict[str, Any]) -> None:
        super().__init__(f"the bridge refused ({status}): {message}")
        self.status, self.message, self.detail = status, message, detail


class BridgeUnavailable(BridgeError, ConnectionError):
    """The bridge could not be reached, timed out, or failed (5xx): try again later."""


class BridgeClient:
    """Calls of one site to the bridge at `bridge_url` (http(s)://host:port[/prefix])."""

    def __init__(
        self, bridge_url: str, identity: SiteIdentity, timeout: httpx.Timeout = TIMEOUT
    ) -> None:
        self.bridge_url = bridge_url.rstrip("/")
        self.identity = identity
        self._http = httpx.Client(timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def enrol(self, secret: str) -> dict[str, Any]:
        """Register this site's public keys with its one-time secret → {site, nats,
        fingerprint}; the request is signed with the key being registered."""
        doc = {"site": self.identity.name, "secret": secret, "keys": self.identity.keys.to_json()}
        reply = self._call("POST", "/api/relay/enrol", doc)
        if reply.get("fingerprint") != self.identity.keys.fingerprint:
            raise BridgeError("the bridge registered other keys than ours (fingerprint differs)")
        return reply

    def publish_exports(self, exports: list[Export]) -> list[Export]:
        """Replace this site's exports in the directory (409: an AE title is taken)."""
        reply = self._call("PUT", "/api/relay/exports", {"exports": [e.to_json() for e in exports]})
        return [Export.from_json(self.identity.name, e) for e in reply.get("exports", [])]

    def directory(self) -> list[SiteEntry]:
        """Every enrolled site (revoked ones marked), as the bridge has it now."""
        reply = self._call("GET", "/api/relay/directory", None, signed=False)
        return [SiteEntry.from_json(doc) for doc in reply.get("sites", [])]

    def urls(self, transfer: str, names: list[str], method: str) -> dict[str, str]:
        """{name: pre-signed URL} for objects of `transfer` (PUT, GET or DELETE)."""
        doc = {"transfer": transfer, "names": list(names), "method": method}
        urls = self._call("POST", "/api/relay/urls", doc).get("urls", {})
        return {str(k): str(v) for k, v in urls.items()}

    def delete_transfer(self, transfer: str) -> int:
        """Have the bridge remove every object of `transfer`; the number removed."""
        return int(self._call("DELETE", f"/api/relay/transfers/{transfer}", None).get("deleted", 0))

    def _call(self, method: str, path: str, doc: Any, signed: bool = True) -> dict[str, Any]:
        body = b"" if doc is None else json.dumps(doc).encode()
        headers = {"Content-Type": "application/json"} if doc is not None else {}
        url = self.bridge_url + path
        if signed:
            headers.update(sign_request(self.identity, method, httpx.URL(url).path, body))
        try:
            response = self._http.request(method, url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise BridgeUnavailable(f"bridge {self.bridge_url} not reached: {exc}") from None
        return _reply(response)


def _reply(response: httpx.Response) -> dict[str, Any]:
    try:
        doc = response.json()
    except ValueError:
        doc = {"error": response.text[:200]}
    if not isinstance(doc, dict):
        doc = {"error": str(doc)[:200]}
    if response.status_code >= 500:
        raise BridgeUnavailable(f"the bridge failed ({response.status_code}): {doc.get('error')}")
    if response.status_code >= 400:
        detail = {k: v for k, v in doc.items() if k != "error"}
        raise BridgeRefused(response.status_code, str(doc.get("error")), detail)
    return doc
