"""The archive's query vocabulary for the doors: levels, unique keys, default return
keys, tag names, and the parent attributes of lower-level QIDO-RS results.

The tables themselves live in attributes.py (with the indexed columns); doors use
these functions, exported from `isthmus.archive`, so that C-FIND, C-MOVE/C-GET,
QIDO-RS and the CLI name the same keys the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from isthmus.archive.attributes import DEFAULT_RETURN, LEVELS, UNIQUE_KEYS, resolve_tag
from isthmus.archive.matching import FindResult, Query

__all__ = [
    "LEVELS",
    "add_parent_attributes",
    "default_return_keys",
    "resolve_tag",
    "unique_key",
]

STUDY_UID, SERIES_UID = 0x0020000D, 0x0020000E
PARENT_CHUNK = 400  # UIDs per parent-level search (a UID list match, PS3.4 C.2.2.2.2)


def unique_key(level: str) -> str:
    """The keyword of a level's unique key (PS3.4 C.6.1.1, C.6.2.1): PatientID,
    StudyInstanceUID, SeriesInstanceUID or SOPInstanceUID.  KeyError for a bad level."""
    return UNIQUE_KEYS[level]


def default_return_keys(level: str) -> list[str]:
    """Keywords every response at a level carries (PS3.18 10.6.3.3, PS3.4 C.4.1.2.1)."""
    return list(DEFAULT_RETURN[level])


def add_parent_attributes(
    find: Callable[[Query], FindResult],
    level: str,
    matches: list[dict[str, Any]],
    study: str | None = None,
    series: str | None = None,
) -> None:
    """Add the study (and series) attributes PS3.18 10.6.3.3 asks for at lower levels
    when the search was not scoped to one study (series).

    They come from a second search at the parent level, by UID list, so computed
    attributes (Modalities in Study, Number of Study Related Series, …) are right."""
    if level == "SERIES" and study is None:
        _merge(find, "STUDY", STUDY_UID, matches)
    if level == "IMAGE":
        if study is None:
            _merge(find, "STUDY", STUDY_UID, matches)
        if series is None:
            _merge(find, "SERIES", SERIES_UID, matches)


def _merge(
    find: Callable[[Query], FindResult], parent: str, uid_tag: int, matches: list[dict[str, Any]]
) -> None:
    key = f"{uid_tag:08X}"
    uids = sorted({m[key]["Value"][0] for m in matches if m.get(key, {}).get("Value")})
    found: dict[str, dict[str, Any]] = {}
    for start in range(0, len(uids), PARENT_CHUNK):
        chunk = uids[start : start + PARENT_CHUNK]
        result = find(
            Query(
                level=parent,
                keys={uid_tag: "\\".join(chunk)},
                include_defaults=True,
                limit=len(chunk),
            )
        )
        for row in result.matches:
            found[row[key]["Value"][0]] = row
    wanted = {f"{resolve_tag(kw):08X}" for kw in DEFAULT_RETURN[parent]}
    for match in matches:
        parent_row = found.get((match.get(key, {}).get("Value") or [None])[0])
        if parent_row:
            for tag in wanted:
                if tag in parent_row and tag not in match:
                    match[tag] = parent_row[tag]
        match_sorted = dict(sorted(match.items()))
        match.clear()
        match.update(match_sorted)
