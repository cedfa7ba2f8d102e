"""Share links and the proof that binds a link's secret to the DTLS fingerprints.

A link is ``BASE/share/LINK_ID#SECRET``: the fragment never reaches an HTTP server, so a
node or bridge on the signalling path learns LINK_ID but not SECRET.  The fetching side
(the offerer) sends, with its SDP offer, HMAC-SHA256(SECRET, "isthmus-p2p/1 offer" LF
LINK_ID LF FP_OFFER); the sharing side checks it and answers with its SDP answer and
HMAC-SHA256(SECRET, "isthmus-p2p/1 answer" LF LINK_ID LF FP_OFFER LF FP_ANSWER).  FP_*
are the SDPs' a=fingerprint:sha-256 values (upper-case hex with colons), which DTLS then
enforces (RFC 8122/8842): whoever rewrites an SDP on the way cannot make a matching
proof without SECRET, and cannot complete DTLS with a fingerprint that is not its own.
Only the standard library's `hmac` is used (docs/p2p.md, "Signalling").
"""

from __future__ import annotations

import hashlib
import hmac
import re
from datetime import timedelta
from urllib.parse import SplitResult, parse_qs, urlsplit

from isthmus.p2p.channel import fingerprint

CONTEXT = "isthmus-p2p/1"
_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw]?)\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "": 86400}


def link_url(base: str, link_id: str, secret: str, site: str | None = None) -> str:
    """The link; a federated one names the sharing site before the fragment
    (``…/share/ID?site=A#SECRET``), for signalling through the bridge."""
    query = f"?site={site}" if site else ""
    return f"{base.rstrip('/')}/share/{link_id}{query}#{secret}"


def link_site(link: str) -> str | None:
    """The sharing site a federated link names (its ``site=`` query parameter), or None."""
    found = parse_qs(urlsplit(link.strip()).query).get("site")
    return found[0] if found else None


def parse_link(link: str) -> tuple[str, str, str]:
    """(base URL of the sharing node, link id, secret) of a share link; ValueError if the
    link is not one.  An error names the link without its fragment: the secret must not
    reach a log or an HTTP answer."""
    parts = urlsplit(link.strip())
    path = parts.path.rstrip("/")
    shown = repr(link.strip().split("#", 1)[0] + ("#…" if parts.fragment else ""))
    if parts.scheme not in ("http", "https") or "/share/" not in path:
        raise ValueError(f"not a share link: {shown} (expected http(s)://HOST/share/ID#SECRET)")
    prefix, _, link_id = path.rpartition("/share/")
    if not link_id or "/" in link_id:
        raise ValueError(f"not a share link: {shown}")
    if not parts.fragment:
        raise ValueError("the share link has no secret (the part after #): copy the whole link")
    _check_authority(parts)
    return f"{parts.scheme}://{parts.netloc}{prefix}", link_id, parts.fragment


def _check_authority(parts: SplitResult) -> None:
    """A host and, when the link names one, a port 1–65535 (RFC 3986 3.2.3): refused here,
    not once the fetch is under way.  The message never repeats the link (its secret)."""
    if not parts.hostname:
        raise ValueError("the share link names no host (expected http(s)://HOST/share/ID#SECRET)")
    port = parts.netloc.rpartition("@")[2].rpartition("]")[2].partition(":")[2]
    try:
        valid = parts.port is None or parts.port > 0
    except ValueError:
        valid = False
    if not valid:
        raise ValueError(f"the share link's port {port!r} is not a number from 1 to 65535")


def link_id_of(link: str) -> str:
    """The link id of a full link, or `link` itself when it is a bare id."""
    if "/share/" in link:
        return urlsplit(link).path.rstrip("/").rpartition("/share/")[2]
    return link.strip()


def parse_duration(text: str) -> timedelta:
    """ "7d", "12h", "30m", "90s", "2w"; a bare number is days."""
    found = _DURATION.match(text)
    if found is None or int(found.group(1)) <= 0:
        raise ValueError(f"not a duration: {text!r} (e.g. 7d, 12h, 30m)")
    return timedelta(seconds=int(found.group(1)) * _UNITS[found.group(2)])


def _mac(secret: str, *fields: str) -> str:
    return hmac.new(
        secret.encode(), "\n".join((CONTEXT, *fields)).encode(), hashlib.sha256
    ).hexdigest()


def offer_proof(secret: str, link_id: str, offer_sdp: str) -> str:
    return _mac(secret, "offer", link_id, fingerprint(offer_sdp))


def answer_proof(secret: str, link_id: str, offer_sdp: str, answer_sdp: str) -> str:
    return _mac(secret, "answer", link_id, fingerprint(offer_sdp), fingerprint(answer_sdp))


def relay_proof(secret: str, link_id: str, site: str, destination_aet: str) -> str:
    """The fetching site's proof, in a request for the relay fallback, that it holds the
    link: bound to the requesting site and the AE title the study is to go to."""
    return _mac(secret, "relay", link_id, site, destination_aet)


def verify(expected: str, given: object) -> bool:
    return isinstance(given, str) and hmac.compare_digest(expected, given)
