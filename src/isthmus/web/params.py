"""Validation of request parameters: UIDs, frame lists, integers, tags.

Every value taken from a URL passes through here before it reaches the archive,
so that no path segment or query parameter can carry anything but what it names.
"""

from __future__ import annotations

import re

from starlette.requests import Request

from isthmus.web.errors import bad_request, not_found

_LENIENT_UID_RE = re.compile(r"^[0-9]+(\.[0-9]+)*$")
_TAG_RE = re.compile(r"^[0-9A-Fa-f]{8}$")
MAX_FRAMES_PER_REQUEST = 10_000


def uid(value: str, what: str = "UID") -> str:
    """A UID as PS3.5 9.1 defines it (digits and dots, at most 64 characters).

    Leading zeros in a component are tolerated (they occur in real data), but
    nothing else: this is what keeps a path segment from naming anything else.
    """
    value = value.strip()
    if not value or len(value) > 64 or not _LENIENT_UID_RE.match(value):
        raise bad_request(
            f"{what} {value[:70]!r} is not a valid UID "
            "(digits separated by dots, at most 64 characters)"
        )
    return value


def path_uids(request: Request) -> tuple[str | None, str | None, str | None]:
    """(study, series, instance) UIDs from the path, each validated when present."""
    params = request.path_params
    study = params.get("study")
    series = params.get("series")
    instance = params.get("instance")
    return (
        uid(study, "Study Instance UID") if study is not None else None,
        uid(series, "Series Instance UID") if series is not None else None,
        uid(instance, "SOP Instance UID") if instance is not None else None,
    )


def frame_numbers(text: str, limit: int | None = None) -> list[int]:
    """A frame list `1,3,5` (PS3.18 8.3.2: 1-based, in the order asked)."""
    numbers: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part.isdigit() or len(part) > 9:
            raise bad_request(f"frame list {text[:80]!r}: {part[:20]!r} is not a frame number")
        number = int(part)
        if number < 1:
            raise bad_request("frame numbers start at 1")
        if limit is not None and number > limit:
            raise not_found(f"frame {number} does not exist (the instance has {limit})")
        numbers.append(number)
    if not numbers or len(numbers) > MAX_FRAMES_PER_REQUEST:
        raise bad_request(f"a frame list names 1 to {MAX_FRAMES_PER_REQUEST} frames")
    return numbers


def tag(text: str) -> int:
    """An attribute tag written as 8 hexadecimal digits (the BulkDataURI form)."""
    if not _TAG_RE.match(text):
        raise bad_request(f"{text[:20]!r} is not a tag (8 hexadecimal digits)")
    return int(text, 16)


def non_negative_int(
    request: Request, name: str, default: int | None = None, maximum: int | None = None
) -> int | None:
    """An optional integer query parameter (`limit`, `offset`, `quality`, …)."""
    values = request.query_params.getlist(name)
    if not values:
        return default
    if len(values) > 1:
        raise bad_request(f"{name} is given more than once")
    text = values[0].strip()
    if not text.isdigit() or len(text) > 12:
        raise bad_request(f"{name}={values[0][:40]!r} is not a non-negative integer")
    number = int(text)
    if maximum is not None and number > maximum:
        raise bad_request(f"{name}={number} is above the maximum {maximum}")
    return number


def single(request: Request, name: str) -> str | None:
    """A query parameter that may appear at most once."""
    values = request.query_params.getlist(name)
    if len(values) > 1:
        raise bad_request(f"{name} is given more than once")
    return values[0] if values else None


def uid_list(tag: int, value: str) -> str:
    """A UID list is comma-separated in a query parameter (PS3.18 8.3.4.1); the matching
    engine takes it backslash-separated.  Values of other VRs are left as they are."""
    from pydicom.datadict import dictionary_VR

    try:
        vr = dictionary_VR(tag)
    except KeyError:
        return value
    return value.replace(",", "\\") if vr == "UI" else value


# Search parameters every origin server takes (PS3.18 Table 8.3.4-1) for matching it may
# not perform (8.3.4.5 Empty Value Matching, 8.3.4.6 Multiple Value Matching), with the
# Warning text the standard gives for a search performed without it.
UNPERFORMED_MATCHING = {
    "emptyvaluematching": "The emptyvaluematching parameter is not supported. "
    "Empty Value Matching has not been performed.",
    "multiplevaluematching": "The multiplevaluematching parameter is not supported. "
    "Multiple Value Matching has not been performed.",
}


# The query parameters of a search that are not matching keys (PS3.18 8.3.3, 8.3.4):
# QIDO-RS and UPS-RS Search alike.
SEARCH_CONTROL_PARAMS = frozenset(
    {
        "includefield",
        "fuzzymatching",
        "limit",
        "offset",
        "accept",
        "charset",
        *UNPERFORMED_MATCHING,
    }
)


def unperformed_matching(request: Request) -> list[str]:
    """The Warning texts for the matching of UNPERFORMED_MATCHING asked for (`=true`):
    the search goes on without it (PS3.18 8.3.4.5, 8.3.4.6); `false` asks for nothing,
    any other value is a 400."""
    texts: list[str] = []
    for name, text in UNPERFORMED_MATCHING.items():
        value = (single(request, name) or "false").lower()
        if value not in ("true", "false"):
            raise bad_request(f"{name} must be true or false")
        if value == "true":
            texts.append(text)
    return texts
