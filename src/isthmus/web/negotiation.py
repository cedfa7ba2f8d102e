"""Content negotiation (PS3.18 8.7): which representation a request gets.

The acceptable media types come from the `accept` query parameter (PS3.18 8.3.3.1),
which takes precedence, then from the Accept header (RFC 9110 12.5.1).  Each
resource offers representations in its own order of preference; the one chosen
has the highest quality value among the offers the client accepts, ties going to
the resource's order (PS3.18 8.7.8).  When none fits, the answer is 406.

Multipart media types are matched on their `type` parameter (`multipart/related;
type="application/dicom"`); the `transfer-syntax` parameter (PS3.18 8.7.3.5.2)
must be one the offer can produce, or `*`.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field

from starlette.requests import Request

from isthmus.web import media_types as mt
from isthmus.web.errors import not_acceptable

_PARAM_RE = re.compile(r'\s*([^\s=;]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)')


@dataclass(frozen=True)
class MediaRange:
    """One entry of an Accept list."""

    type: str  # "multipart/related", "image/*", "*/*"
    params: dict[str, str] = field(default_factory=dict, hash=False)  # lower-case names
    q: float = 1.0

    @property
    def part_type(self) -> str | None:
        """The `type` parameter of a multipart range, lower-cased."""
        value = self.params.get("type")
        return value.lower() if value else None

    @property
    def transfer_syntax(self) -> str | None:
        return self.params.get("transfer-syntax")

    @property
    def specificity(self) -> int:
        base = 0 if self.type == "*/*" else 1 if self.type.endswith("/*") else 2
        return (
            base * 4
            + (2 if self.part_type and "*" not in self.part_type else 0)
            + (1 if self.transfer_syntax else 0)
        )


@dataclass(frozen=True)
class Offer:
    """A representation a resource can produce.

    `media_type` is the body's type, or for multipart offers the type of each part.
    `syntaxes` are the transfer syntaxes it can be asked for (empty: the parameter
    is meaningless for it); `default_syntax` is used when the client names none.
    """

    media_type: str
    multipart: bool = False
    syntaxes: frozenset[str] | None = frozenset()
    default_syntax: str | None = None

    def accepts_syntax(self, syntax: str | None) -> bool:
        if syntax is None or syntax == mt.ANY_SYNTAX:
            return True
        return self.syntaxes is None or syntax in self.syntaxes


@dataclass(frozen=True)
class Choice:
    """The selected representation: media type, packaging and transfer syntax."""

    media_type: str
    multipart: bool
    transfer_syntax: str | None


def split_list(text: str) -> list[str]:
    """Split a header list on commas outside quoted strings."""
    items: list[str] = []
    current: list[str] = []
    quoted = False
    for ch in text:
        if ch == '"':
            quoted = not quoted
        if ch == "," and not quoted:
            items.append("".join(current))
            current = []
        else:
            current.append(ch)
    items.append("".join(current))
    return [item.strip() for item in items if item.strip()]


def parse_media_type(text: str) -> tuple[str, dict[str, str]]:
    """`type/subtype; a=b; c="d"` → ("type/subtype", {"a": "b", "c": "d"})."""
    head, _, rest = text.partition(";")
    params: dict[str, str] = {}
    for match in _PARAM_RE.finditer(rest):
        name, value = match.group(1).lower(), match.group(2).strip()
        if value.startswith('"') and value.endswith('"') and len(value) >= 2:
            value = value[1:-1].replace('\\"', '"')
        params[name] = value
    return head.strip().lower(), params


def parse_accept(values: list[str]) -> list[MediaRange]:
    """Media ranges of one or more Accept values; unparseable quality values count as 1."""
    ranges: list[MediaRange] = []
    for value in values:
        for item in split_list(value):
            media_type, params = parse_media_type(item)
            if "/" not in media_type:
                if media_type == "*":
                    media_type = "*/*"
                else:
                    continue
            q = 1.0
            if "q" in params:
                try:
                    q = min(max(float(params.pop("q")), 0.0), 1.0)
                except ValueError:
                    q = 1.0
            ranges.append(MediaRange(media_type, params, q))
    return ranges


def _type_matches(pattern: str, media_type: str) -> bool:
    if pattern == "*/*":
        return True
    major, _, minor = pattern.partition("/")
    t_major, _, t_minor = media_type.lower().partition("/")
    return major == t_major and (minor == "*" or minor == t_minor)


def matches(rng: MediaRange, offer: Offer) -> bool:
    """Does a media range accept an offer?"""
    if offer.multipart:
        if rng.type == mt.MULTIPART_RELATED:
            part = rng.part_type
            if part is not None and not _type_matches(part, offer.media_type):
                return False
        elif rng.type not in ("*/*", "multipart/*"):
            return False
    elif not _type_matches(rng.type, offer.media_type):
        return False
    return offer.accepts_syntax(rng.transfer_syntax)


def select(ranges: list[MediaRange], offers: list[Offer]) -> Choice | None:
    """The best offer for these ranges, or None (PS3.18 8.7.8)."""
    if not ranges:
        ranges = [MediaRange("*/*")]
    best: tuple[float, int, Offer, MediaRange] | None = None
    for index, offer in enumerate(offers):
        matching = [r for r in ranges if matches(r, offer)]
        if not matching:
            continue
        top = max(matching, key=lambda r: r.specificity)
        if top.q <= 0:
            continue
        if best is None or top.q > best[0]:
            best = (top.q, index, offer, top)
    if best is None:
        return None
    _, _, offer, rng = best
    syntax = rng.transfer_syntax or offer.default_syntax
    return Choice(offer.media_type, offer.multipart, syntax)


def negotiate(request: Request, offers: list[Offer]) -> Choice:
    """Select a representation for a request or raise 406 (PS3.18 8.7.8).

    Media types in the `accept` query parameter are tried first, then the Accept
    header; a `transfer-syntax` query parameter applies to the former (8.7.8.2).
    """
    query_values = request.query_params.getlist("accept")
    if query_values:
        choice = _choose(query_values, offers)
        if choice is not None:
            syntax_param = request.query_params.get("transfer-syntax")
            if syntax_param and not _explicit_syntax(query_values):
                choice = Choice(choice.media_type, choice.multipart, syntax_param)
            return choice
    header = request.headers.getlist("accept")
    choice = _choose(header, offers)
    if choice is None:
        wanted = ", ".join(query_values + header) or "(nothing)"
        can = "; ".join(describe(o) for o in offers)
        raise not_acceptable(f"cannot produce any of: {wanted[:300]}. This resource offers: {can}")
    return choice


def alternatives(request: Request, offers: list[Offer]) -> list[Choice]:
    """The other representations the client accepts, most preferred first: media ranges
    with q > 0, from the `accept` query parameter, then the Accept header.

    A client lists the syntaxes it can take as several media types with quality values
    (PS3.18 8.7.3.5.2); when the one `negotiate` chose cannot be produced for the
    resource, the next of these that can is the selected one (8.7.8).  A range naming no
    syntax (`multipart/related; type="application/dicom"`, `*/*`) asks for the offer's
    default, Explicit VR Little Endian for instances (8.7.3.5.2) — unless a range of
    q=0 refuses that syntax.
    """
    out: list[Choice] = []
    for values in (request.query_params.getlist("accept"), request.headers.getlist("accept")):
        ranges = parse_accept(values)
        refused = {r.transfer_syntax for r in ranges if r.q <= 0 and r.transfer_syntax}
        accepted = [r for r in ranges if r.q > 0]
        for rng in sorted(accepted, key=lambda r: -r.q):  # stable: ties keep the client's order
            offer = next((o for o in offers if matches(rng, o)), None)
            syntax = rng.transfer_syntax or (offer.default_syntax if offer else None)
            if offer is None or (syntax is None and mt.EXPLICIT_VR_LE in refused):
                continue
            out.append(Choice(offer.media_type, offer.multipart, syntax))
    return out


# Clients send the same few Accept values again and again: the choice for a short one
# is kept (bounded: at most CACHED values of at most CACHED_LENGTH characters each).
CACHED, CACHED_LENGTH = 512, 512


def _choose(values: list[str], offers: list[Offer]) -> Choice | None:
    """`select` over the media ranges of `values` (remembered for short values)."""
    if sum(len(v) for v in values) > CACHED_LENGTH:
        return select(parse_accept(values), offers)
    return _choose_cached(tuple(values), tuple(offers))


@functools.lru_cache(maxsize=CACHED)
def _choose_cached(values: tuple[str, ...], offers: tuple[Offer, ...]) -> Choice | None:
    return select(parse_accept(list(values)), list(offers))


def _explicit_syntax(values: list[str]) -> bool:
    return any("transfer-syntax" in v.lower() for v in values)


def describe(offer: Offer) -> str:
    if offer.multipart:
        return f'multipart/related; type="{offer.media_type}"'
    return offer.media_type


def content_type(choice: Choice, boundary: str | None = None) -> str:
    """The Content-Type header for a choice (multipart needs the boundary)."""
    if choice.multipart:
        value = f'multipart/related; type="{choice.media_type}"; boundary={boundary}'
        return value
    return choice.media_type  # JSON is UTF-8 by definition (RFC 8259); XML declares it
