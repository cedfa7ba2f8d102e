"""One matching engine for C-FIND and QIDO-RS, compiled to SQL (PS3.4 C.2.2.2).

Matching kinds: single value, universal (empty), wildcard (``*`` ``?``), range for
DA/TM/DT (``A-B``, ``A-``, ``-B``), list of UIDs (``\\``), case-insensitive person
names (PS3.4 C.2.2.2.1, the default here) and optional fuzzy matching of names
(any name component starts with the value).  Keys indexed as columns are matched in
SQL; any other key is matched and returned from the stored DICOM JSON of a
representative instance.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from pydicom.datadict import dictionary_VR, tag_for_keyword
from sqlalchemy.engine import Connection

from isthmus.archive import index as idx
from isthmus.archive.attributes import (
    BY_TAG,
    DEFAULT_RETURN,
    LEVELS,
    UNIQUE_KEYS,
    Attribute,
    level_index,
)
from isthmus.archive.attributes import keyword as keyword_of

_DATE_RE = re.compile(r"^\d{8}$")
_TIME_RE = re.compile(r"^\d{2}(\d{2}(\d{2}(\.\d{1,6})?)?)?$")
_DT_RE = re.compile(r"^\d{4}(\d{2}(\d{2}(\d{2}(\d{2}(\d{2}(\.\d{1,6})?)?)?)?)?)?([+-]\d{4})?$")
_INT_VRS = ("IS", "US", "UL", "SL", "SS")


class QueryError(ValueError):
    """A query that cannot be run as asked; the message is meant for the caller."""


@dataclass
class Query:
    """A C-FIND identifier or a QIDO-RS search, in archive terms.

    `keys` maps tags to match values: "" means universal matching (return only).
    `hierarchical` applies PS3.4 C.4.1.2.1 rules on the unique keys of the levels
    above `level` for the information model `root` ("PATIENT" or "STUDY").
    """

    level: str
    keys: dict[int, str] = field(default_factory=dict)
    root: str = "STUDY"
    hierarchical: bool = False
    fuzzy: bool = False
    include_defaults: bool = False
    include_all: bool = False
    limit: int | None = None
    offset: int = 0


@dataclass
class FindResult:
    matches: list[dict[str, Any]]
    truncated: bool = False


_BASE = {"PATIENT": idx.patient, "STUDY": idx.study, "SERIES": idx.series, "IMAGE": idx.instance}


def find(conn: Connection, query: Query) -> FindResult:
    """Run a query; returns DICOM JSON datasets at the query's level."""
    level = query.level.upper()
    if level not in LEVELS:
        raise QueryError(f"unknown query level {query.level!r}")
    if query.hierarchical:
        _check_hierarchy(query, level)
    base = _BASE[level]
    select_from = _join_up(level)
    where: list[Any] = []
    post: list[tuple[int, str]] = []
    for tag, value in query.keys.items():
        attr = BY_TAG.get(tag)
        if attr is not None and level_index(attr.level) > level_index(level):
            continue  # keys below the query level are ignored (PS3.4 C.4.1.2.1)
        if value in ("", "*") or value is None:
            continue
        if attr is not None and not attr.computed:
            where.append(_condition(attr, value, query.fuzzy))
        elif attr is not None:
            where.append(_computed_condition(attr, value))
        else:
            post.append((tag, value))
    stmt = sa.select(base.c.pk).select_from(select_from).where(*where).order_by(base.c.pk)
    if not post:
        stmt = stmt.offset(query.offset or None)
        if query.limit is not None:
            stmt = stmt.limit(query.limit + 1)
    pks = [row[0] for row in conn.execute(stmt)]
    representative = (
        _representatives(conn, level, pks) if (post or _wants_metadata(query, level)) else {}
    )
    if post:
        pks = [pk for pk in pks if _post_match(representative.get(pk), post, query.fuzzy)]
        pks = pks[query.offset :]
    truncated = query.limit is not None and len(pks) > query.limit
    if query.limit is not None:
        pks = pks[: query.limit]
    return FindResult(_build(conn, query, level, pks, representative), truncated)


def _check_hierarchy(query: Query, level: str) -> None:
    """Hierarchical search: every level above must carry its unique key, one value."""
    start = 0 if query.root == "PATIENT" else 1
    if query.root not in ("PATIENT", "STUDY"):
        raise QueryError(f"unknown information model {query.root!r}")
    if query.root == "STUDY" and level == "PATIENT":
        raise QueryError("the Study Root model has no PATIENT level")
    for upper in LEVELS[start : level_index(level)]:
        kw = UNIQUE_KEYS[upper]
        value = query.keys.get(int(tag_for_keyword(kw)))
        if not value or any(c in value for c in "*?"):
            raise QueryError(
                f"{upper} level unique key {kw} must have a value for a {level} level query"
            )


def _join_up(level: str) -> Any:
    i, s, st, p = idx.instance, idx.series, idx.study, idx.patient
    return {
        "PATIENT": p,
        "STUDY": st.join(p),
        "SERIES": s.join(st).join(p),
        "IMAGE": i.join(s).join(st).join(p),
    }[level]


def _column(attr: Attribute) -> sa.Column:
    return _BASE[attr.level].c[attr.column]


def _condition(attr: Attribute, value: str, fuzzy: bool) -> Any:
    """SQL for one key (PS3.4 C.2.2.2.1-C.2.2.2.5)."""
    vr = attr.vr
    column = _column(attr)
    values = [v for v in value.split("\\")]
    if vr in ("DA", "TM", "DT"):
        return sa.or_(*[_date_condition(column, vr, v, attr.keyword) for v in values])
    if vr in _INT_VRS:
        try:
            numbers = [int(v) for v in values]
        except ValueError:
            raise QueryError(f"{attr.keyword}: {value!r} is not an integer") from None
        return column.in_(numbers)
    if vr == "PN":
        norm = _BASE[attr.level].c[attr.column + "_norm"]
        return sa.or_(*[_pn_condition(norm, column, v, fuzzy) for v in values])
    return sa.or_(*[_string_condition(column, v) for v in values])


def _string_condition(column: Any, value: str) -> Any:
    if "*" in value or "?" in value:
        return column.like(_like_pattern(value), escape="\\")
    return column == value


def _pn_condition(norm: Any, full: Any, value: str, fuzzy: bool) -> Any:
    """Person names: case-insensitive on the alphabetic group; other groups as given."""
    upper = value.split("=", 1)[0].upper()
    if fuzzy and upper and "*" not in upper and "?" not in upper:
        parts = [p for p in re.split(r"[\^ ]+", upper) if p]
        conds = [
            sa.or_(
                norm.like(_like_pattern(p) + "%", escape="\\"),
                norm.like("%^" + _like_pattern(p) + "%", escape="\\"),
                norm.like("% " + _like_pattern(p) + "%", escape="\\"),
            )
            for p in parts
        ]
        return sa.and_(*conds)
    groups = value.split("=")
    if len(groups) == 1:
        return _string_condition(norm, upper) if upper else sa.false()
    # Ideographic/phonetic groups (PS3.5 6.2.1.2): every group given must match.
    conds = [_pn_groups_condition(full, groups)]
    if upper and upper != "*":
        conds.append(_string_condition(norm, upper))
    return sa.and_(*conds)


def _pn_groups_condition(full: Any, groups: list[str]) -> Any:
    """The ideographic (and phonetic) group of a query, each matched in its own place
    in the stored ``alphabetic=ideographic=phonetic`` value (alphabetic groups hold no '=')."""
    ideo = _like_pattern(groups[1]) if groups[1] else "%"
    if len(groups) > 2 and groups[2]:
        return full.like(f"%={ideo}={_like_pattern(groups[2])}", escape="\\")
    return sa.or_(
        full.like(f"%={ideo}=%", escape="\\"),
        sa.and_(full.like(f"%={ideo}", escape="\\"), ~full.like("%=%=%")),
    )


def _like_pattern(value: str) -> str:
    out = []
    for ch in value:
        if ch in "%_\\":
            out.append("\\" + ch)
        elif ch == "*":
            out.append("%")
        elif ch == "?":
            out.append("_")
        else:
            out.append(ch)
    return "".join(out)


def _date_condition(column: Any, vr: str, value: str, keyword: str) -> Any:
    """Single value or range matching of DA, TM and DT (PS3.4 C.2.2.2.5)."""
    if "-" not in value or (vr == "DT" and value.count("-") == 1 and _is_dt_offset(value)):
        _check_date(vr, value, keyword)
        if vr == "TM":
            lo, hi = _time_bounds(value)
            return sa.and_(column >= lo, column <= hi)
        return column == value if vr == "DA" else column.like(value + "%")
    if value.count("-") != 1:
        raise QueryError(f"{keyword}: invalid range {value!r}")
    lo, hi = value.split("-")
    if not lo and not hi:
        raise QueryError(f"{keyword}: invalid range {value!r}")
    for bound in (lo, hi):
        if bound:
            _check_date(vr, bound, keyword)
    if lo and hi and _pad(vr, lo, False) > _pad(vr, hi, True):
        raise QueryError(f"{keyword}: range {value!r} ends before it starts")
    conds = []
    if lo:
        conds.append(column >= _pad(vr, lo, False))
    if hi:
        conds.append(column <= _pad(vr, hi, True))
    return sa.and_(*conds)


def _is_dt_offset(value: str) -> bool:
    return bool(re.match(r"^\d{4,}.*[+-]\d{4}$", value)) and not value.startswith("-")


def _check_date(vr: str, value: str, keyword: str) -> None:
    pattern = {"DA": _DATE_RE, "TM": _TIME_RE, "DT": _DT_RE}[vr]
    if not pattern.match(value):
        raise QueryError(f"{keyword}: {value!r} is not a valid {vr} value")
    if vr == "DA":
        month, day = int(value[4:6]), int(value[6:8])
        if not (1 <= month <= 12 and 1 <= day <= 31):
            raise QueryError(f"{keyword}: {value!r} is not a valid date")
    if vr == "TM" and (int(value[:2]) > 23 or (len(value) >= 4 and int(value[2:4]) > 59)):
        raise QueryError(f"{keyword}: {value!r} is not a valid time")


def _time_bounds(value: str) -> tuple[str, str]:
    return _pad("TM", value, False), _pad("TM", value, True)


def _pad(vr: str, value: str, upper: bool) -> str:
    """Stretch a partial DA/TM/DT to the first or last moment it denotes."""
    if vr == "DA":
        return value
    if vr == "TM":
        whole = value.split(".")[0]
        tail = "235959"[len(whole) :] if upper else "000000"[len(whole) :]
        frac = value.split(".")[1] if "." in value else ""
        frac = (frac + ("9" if upper else "0") * 6)[:6]
        return whole + tail + "." + frac if upper else whole + tail
    return value + ("~" if upper else "")


def _computed_condition(attr: Attribute, value: str) -> Any:
    values = value.split("\\")
    s, i = idx.series, idx.instance
    if attr.keyword == "ModalitiesInStudy":
        return sa.exists().where(s.c.study_pk == idx.study.c.pk, s.c.modality.in_(values))
    if attr.keyword == "SOPClassesInStudy":
        return sa.exists().where(
            s.c.study_pk == idx.study.c.pk, i.c.series_pk == s.c.pk, i.c.sop_class_uid.in_(values)
        )
    return sa.true()  # counts are return keys only


# --------------------------------------------------------------------- results
def _wants_metadata(query: Query, level: str) -> bool:
    if query.include_all:
        return True
    return any(tag not in BY_TAG for tag in query.keys)


def _representatives(conn: Connection, level: str, pks: list[int]) -> dict[int, dict]:
    """DICOM JSON of one instance per result (the first stored), for non-indexed keys."""
    if not pks:
        return {}
    i, s, st = idx.instance, idx.series, idx.study
    group = {
        "IMAGE": i.c.pk,
        "SERIES": i.c.series_pk,
        "STUDY": s.c.study_pk,
        "PATIENT": st.c.patient_pk,
    }[level]
    out: dict[int, dict] = {}
    for chunk in _chunks(pks, 500):
        first = (
            sa.select(group.label("g"), sa.func.min(i.c.pk).label("ipk"))
            .select_from(i.join(s).join(st))
            .where(group.in_(chunk))
            .group_by(group)
            .subquery()
        )
        rows = conn.execute(sa.select(first.c.g, i.c.metadata).join(i, i.c.pk == first.c.ipk))
        for g, text in rows:
            out[g] = json.loads(text)
    return out


def _post_match(meta: dict | None, keys: list[tuple[int, str]], fuzzy: bool) -> bool:
    if meta is None:
        return False
    for tag, value in keys:
        entry = meta.get(f"{tag:08X}")
        vr = (entry or {}).get("vr") or _vr(tag)
        stored = [_json_text(v, vr) for v in (entry or {}).get("Value", [])]
        if vr == "SQ":
            continue  # sequence matching: items are returned, not matched
        if not any(_text_match(s, value, vr, fuzzy) for s in stored):
            return False
    return True


def _vr(tag: int) -> str:
    try:
        return dictionary_VR(tag)
    except KeyError:
        return "UN"


def _json_text(value: Any, vr: str) -> str:
    if vr == "PN" and isinstance(value, dict):
        return value.get("Alphabetic", "")
    return str(value)


def _text_match(stored: str, value: str, vr: str, fuzzy: bool) -> bool:
    for one in value.split("\\"):
        if vr in ("DA", "TM", "DT") and "-" in one:
            lo, _, hi = one.partition("-")
            if (not lo or stored >= _pad(vr, lo, False)) and (
                not hi or stored <= _pad(vr, hi, True)
            ):
                return True
            continue
        if vr == "PN":
            stored_cmp, one = stored.upper(), one.upper()
        else:
            stored_cmp = stored
        regex = "^" + re.escape(one).replace(r"\*", ".*").replace(r"\?", ".") + "$"
        if re.match(regex, stored_cmp, re.S):
            return True
    return False


def _chunks(items: list[int], size: int) -> Iterable[list[int]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _build(
    conn: Connection, query: Query, level: str, pks: list[int], representative: dict[int, dict]
) -> list[dict[str, Any]]:
    """DICOM JSON per match: requested keys (+ defaults for QIDO), from columns or metadata."""
    if not pks:
        return []
    tags = set(query.keys)
    if query.include_defaults:
        tags |= {int(tag_for_keyword(kw)) for kw in DEFAULT_RETURN[level]}
        for upper in LEVELS[1 : level_index(level) + 1]:
            tags.add(int(tag_for_keyword(UNIQUE_KEYS[upper])))
    plan = _return_plan(tags, level)
    rows = _column_rows(conn, level, pks)
    computed = _computed_values(conn, level, pks, tags)
    out = []
    for pk in pks:
        row = rows[pk]
        meta = representative.get(pk, {})
        result: dict[str, Any] = {}
        if query.include_all:
            result.update(
                {
                    k: v
                    for k, v in meta.items()
                    if "BulkDataURI" not in v and _level_ok(int(k, 16), level)
                }
            )
        for key, attr, vr in plan:
            if attr is None:
                entry = meta.get(key)
                if entry is None or "BulkDataURI" in entry:
                    entry = {"vr": vr}
                result[key] = entry
            elif attr.computed:
                result[key] = computed.get((attr.keyword, pk), {"vr": vr})
            else:
                result[key] = _json_entry(vr, row.get(attr.column))
        # The plan is in tag order; only the metadata of include_all needs sorting.
        out.append(dict(sorted(result.items())) if query.include_all else result)
    return out


def _return_plan(tags: set[int], level: str) -> list[tuple[str, Attribute | None, str]]:
    """(key, indexed attribute or None, VR) of each returned tag, in tag order; keys of
    levels below the query level are left out (PS3.4 C.4.1.2.1)."""
    plan = []
    for tag in sorted(tags):
        attr = BY_TAG.get(tag)
        if attr is not None and level_index(attr.level) > level_index(level):
            continue
        plan.append((f"{tag:08X}", attr, attr.vr if attr is not None else _vr(tag)))
    return plan


def _level_ok(tag: int, level: str) -> bool:
    attr = BY_TAG.get(tag)
    return attr is None or level_index(attr.level) <= level_index(level)


def _column_rows(conn: Connection, level: str, pks: list[int]) -> dict[int, dict[str, Any]]:
    tables = {
        "PATIENT": [idx.patient],
        "STUDY": [idx.study, idx.patient],
        "SERIES": [idx.series, idx.study, idx.patient],
        "IMAGE": [idx.instance, idx.series, idx.study, idx.patient],
    }[level]
    base = tables[0]
    cols = [base.c.pk.label("__pk")]
    for table in tables:
        cols += [
            c
            for c in table.c
            if c.name != "pk" and not c.name.endswith("_pk") and c.name not in ("metadata",)
        ]
    out: dict[int, dict[str, Any]] = {}
    for chunk in _chunks(pks, 500):
        stmt = sa.select(*cols).select_from(_join_up(level)).where(base.c.pk.in_(chunk))
        result = conn.execute(stmt)
        names = list(result.keys())
        for row in result:
            data = dict(zip(names, row))
            out[data.pop("__pk")] = data
    return out


def _computed_values(
    conn: Connection, level: str, pks: list[int], tags: set[int]
) -> dict[tuple[str, int], dict]:
    wanted = {BY_TAG[t].keyword for t in tags if t in BY_TAG and BY_TAG[t].computed}
    out: dict[tuple[str, int], dict] = {}
    if not wanted:
        return out
    # NumberOf…Related{Studies,Series,Instances} → which count it is.
    counted = [
        (kw, noun)
        for kw in wanted
        for noun in ("Studies", "Series", "Instances")
        if kw.startswith("NumberOf") and kw.endswith("Related" + noun)
    ]
    i, s, st = idx.instance, idx.series, idx.study
    joined = i.join(s).join(st)
    group = {"PATIENT": st.c.patient_pk, "STUDY": st.c.pk, "SERIES": s.c.pk}.get(level)
    if group is None:
        return out
    for chunk in _chunks(pks, 500):
        aggregates = {
            "Studies": sa.func.count(sa.distinct(st.c.pk)),
            "Series": sa.func.count(sa.distinct(s.c.pk)),
            "Instances": sa.func.count(i.c.pk),
        }
        stmt = (
            sa.select(group, *aggregates.values())
            .select_from(joined)
            .where(group.in_(chunk))
            .group_by(group)
        )
        for g, n_studies, n_series, n_instances in conn.execute(stmt) if counted else ():
            counts = {"Studies": n_studies, "Series": n_series, "Instances": n_instances}
            for kw, noun in counted:
                out[(kw, g)] = {"vr": "IS", "Value": [counts[noun]]}
        for kw, column in (
            ("ModalitiesInStudy", s.c.modality),
            ("SOPClassesInStudy", i.c.sop_class_uid),
        ):
            if kw not in wanted:
                continue
            stmt = (
                sa.select(group, column)
                .select_from(joined)
                .where(group.in_(chunk))
                .distinct()
                .order_by(group, column)
            )
            found: dict[int, list[str]] = {}
            for g, value in conn.execute(stmt):
                if value:
                    found.setdefault(g, []).append(value)
            for g, values in found.items():
                out[(kw, g)] = {"vr": "CS" if kw == "ModalitiesInStudy" else "UI", "Value": values}
    return out


def _json_entry(vr: str, value: Any) -> dict[str, Any]:
    """A DICOM JSON element from an index column value."""
    if value is None or value == "":
        return {"vr": vr}
    if vr == "PN":
        groups = str(value).split("=")
        names = dict(zip(("Alphabetic", "Ideographic", "Phonetic"), groups))
        return {"vr": vr, "Value": [{k: v for k, v in names.items() if v}]}
    if vr in _INT_VRS:
        return {"vr": vr, "Value": [int(value)]}
    return {"vr": vr, "Value": str(value).split("\\")}


def query_from_keywords(level: str, params: dict[str, str], **kwargs: Any) -> Query:
    """Build a Query from keyword/tag → value pairs (CLI and QIDO-RS)."""
    from isthmus.archive.attributes import resolve_tag

    keys: dict[int, str] = {}
    for name, value in params.items():
        try:
            keys[resolve_tag(name)] = value
        except KeyError as exc:
            raise QueryError(str(exc)) from None
    return Query(level=level.upper(), keys=keys, **kwargs)


__all__ = ["Query", "QueryError", "FindResult", "find", "query_from_keywords", "keyword_of"]
