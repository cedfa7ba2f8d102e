"""Matching work items: the query engine's matchers over the stored work item dataset.

A UPS-RS search (PS3.18 11.9, QIDO-style parameters), a UPS C-FIND identifier, a
Modality Worklist C-FIND and the filter of a filtered global subscription all name
keys the way QIDO-RS does (keyword or tag, ``Seq.Key`` for a key of a sequence item);
`compile_keys` turns them into the matchers of `archive/matchers.py` (PS3.4 C.2.2.2:
single value, list of UIDs, wildcard, DA/TM/DT ranges, sequence matching, PN rules)
and `matches` checks them against a work item's DICOM JSON with
`matching.match_stored`, the same check C-FIND and QIDO-RS use for attributes that are
not index columns.  Nothing is matched differently here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from isthmus.archive.attributes import keyword as keyword_of
from isthmus.archive.matchers import Matcher, matcher_for, sequence_matcher
from isthmus.archive.matching import _vr, match_stored, query_from_keywords

Compiled = list[tuple[int, Matcher]]


def compile_keys(params: Mapping[str, str], fuzzy: bool = False) -> Compiled:
    """Matchers of the keys with a value; universal keys (``""``, ``*``) drop out.
    Raises `QueryError` for an unknown name or a value its rule refuses."""
    query = query_from_keywords("IMAGE", dict(params))
    out: Compiled = []
    for tag, value in query.keys.items():
        m = matcher_for(keyword_of(tag), _vr(tag), value, fuzzy)
        if m is not None:
            out.append((tag, m))
    for tag, item_keys in query.sequence_keys.items():
        seq = sequence_matcher(keyword_of(tag), item_keys, fuzzy)
        if seq is not None:
            out.append((tag, seq))
    return out


def matches(ds: Mapping[str, Any], compiled: Compiled) -> bool:
    return match_stored(dict(ds), compiled)


def exact_value(params: Mapping[str, str], keyword: str) -> str | None:
    """The value of a key that is a plain single value (no wildcard, list, range), for
    narrowing the candidates in SQL before `matches` decides."""
    v = params.get(keyword)
    if v is None or not v or any(c in v for c in "*?\\-"):
        return None
    return v
