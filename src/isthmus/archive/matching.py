"""One matching engine for C-FIND and QIDO-RS (PS3.4 C.2.2.2).

`find` turns each key of a `Query` into one matcher (`isthmus.archive.matchers`): keys
indexed as columns become its SQL condition; any other key is checked with the same
matcher against the stored DICOM JSON of a representative instance (the first stored
of each entity).  Universal keys (empty or ``*``) only ask for the attribute.  This
module also builds the responses: requested keys from columns, computed attributes
(counts, Modalities in Study) and stored metadata.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from pydicom.datadict import dictionary_VR, tag_for_keyword
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Connection

from isthmus.archive import index as idx
from isthmus.archive.attributes import (
    BY_TAG,
    DEFAULT_RETURN,
    LEVELS,
    UNIQUE_KEYS,
    Attribute,
    level_index,
    level_of,
)
from isthmus.archive.attributes import keyword as keyword_of
from isthmus.archive.matchers import (
    Matcher,
    QueryError,
    SequenceMatch,
    compare,
    matcher_for,
    sequence_matcher,
)
from isthmus.archive.prepared import Prepared

_INT_VRS = ("IS", "US", "UL", "SL", "SS")


@dataclass
class Query:
    """A C-FIND identifier or a QIDO-RS search, in archive terms.

    `keys` maps tags to match values: "" means universal matching (return only).
    `hierarchical` applies PS3.4 C.4.1.2.1 rules on the unique keys of the levels
    above `level` for the information model `root` ("PATIENT" or "STUDY").
    `fuzzy` turns on fuzzy person name matching (`matchers.FuzzyName`; QIDO-RS
    ``fuzzymatching=true``).  `sequence_keys` maps a sequence tag to the keys of its
    one item (PS3.4 C.2.2.2.6 sequence matching, over stored metadata); the sequence
    is returned like any key.
    """

    level: str
    keys: dict[int, str] = field(default_factory=dict)
    sequence_keys: dict[int, dict[int, str]] = field(default_factory=dict)
    root: str = "STUDY"
    hierarchical: bool = False
    fuzzy: bool = False
    include_defaults: bool = False
    include_all: bool = False
    limit: int | None = None
    offset: int = 0
    #: Refuse invalid values of keys below the query level too, which are otherwise
    #: ignored unchecked (QIDO-RS answers 400 for them; C-FIND stays lenient).
    validate_all: bool = False


@dataclass
class FindResult:
    matches: list[dict[str, Any]]
    truncated: bool = False


@dataclass
class ColumnRows:
    """Indexed columns of the matches: each result pk's row (a tuple) and where each
    named column is in it (a dict per row took a fifth of a 1,000-study search under
    cProfile)."""

    positions: dict[str, int] = field(default_factory=dict)
    rows: dict[int, Any] = field(default_factory=dict)


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
    where: list[Any] = []  # the computed attributes' conditions, then the columns'
    indexed: list[tuple[Attribute, Matcher]] = []
    post: list[tuple[int, Matcher]] = []
    for tag, value in query.keys.items():
        attr = BY_TAG.get(tag)
        vr = attr.vr if attr is not None else _vr(tag)
        if attr is not None and level_index(attr.level) > level_index(level):
            if query.validate_all:
                matcher_for(keyword_of(tag), vr, value, query.fuzzy)  # QueryError if invalid
            continue  # keys below the query level are ignored (PS3.4 C.4.1.2.1)
        matcher = matcher_for(keyword_of(tag), vr, value, query.fuzzy)
        if matcher is None:
            continue  # universal matching (PS3.4 C.2.2.2.3)
        if attr is not None and not attr.computed and matcher.indexable:
            indexed.append((attr, matcher))
        elif attr is not None and attr.computed:
            where.append(_computed_condition(attr, matcher))
        else:  # not a column, or a rule without SQL form (DT): over stored JSON
            post.append((tag, matcher))
    for tag, item_keys in query.sequence_keys.items():
        seq = sequence_matcher(keyword_of(tag), item_keys, query.fuzzy)
        if seq is not None:
            post.append((tag, seq))
    tags = _returned_tags(query, level)
    plan = _return_plan(tags, level)
    columns = tuple(sorted({a.column for _, a, _ in plan if a is not None and not a.computed}))
    rows: ColumnRows | None = None
    if not post and not where:  # one comparison per key, perhaps: a statement of fixed shape
        rows = _match_by_values(conn, level, columns, indexed, query)
    if rows is not None:
        pks = list(rows.rows)
    elif post:  # matched in Python: the columns are fetched for the survivors only
        where += [_condition(attr, matcher) for attr, matcher in indexed]
        stmt = sa.select(base.c.pk).select_from(select_from).where(*where).order_by(base.c.pk)
        pks = list(conn.execute(stmt).scalars().all())
    else:  # the matches and their returned columns in one statement
        where += [_condition(attr, matcher) for attr, matcher in indexed]
        stmt = _match_select(level, columns).where(*where).offset(query.offset or None)
        if query.limit is not None:
            stmt = stmt.limit(query.limit + 1)
        rows = _keyed_rows(conn.execute(stmt))
        pks = list(rows.rows)
    representative = (
        _representatives(conn, level, pks) if (post or _wants_metadata(query, level)) else {}
    )
    if post:
        pks = [pk for pk in pks if match_stored(representative.get(pk), post)]
        pks = pks[query.offset :]
    truncated = query.limit is not None and len(pks) > query.limit
    if query.limit is not None:
        pks = pks[: query.limit]
    if rows is None:
        rows = _column_rows(conn, level, pks, columns)
    return FindResult(_build(conn, query, level, pks, representative, tags, plan, rows), truncated)


def _returned_tags(query: Query, level: str) -> set[int]:
    """The requested keys, and for QIDO the defaults and the unique keys above."""
    tags = set(query.keys) | set(query.sequence_keys)
    if query.include_defaults:
        tags |= {_tag(kw) for kw in DEFAULT_RETURN[level]}
        for upper in LEVELS[1 : level_index(level) + 1]:
            tags.add(_tag(UNIQUE_KEYS[upper]))
    return tags


def _check_hierarchy(query: Query, level: str) -> None:
    """Hierarchical search: every level above must carry its unique key, one value."""
    start = 0 if query.root == "PATIENT" else 1
    if query.root not in ("PATIENT", "STUDY"):
        raise QueryError(f"unknown information model {query.root!r}")
    if query.root == "STUDY" and level == "PATIENT":
        raise QueryError("the Study Root model has no PATIENT level")
    for upper in LEVELS[start : level_index(level)]:
        kw = UNIQUE_KEYS[upper]
        value = query.keys.get(_tag(kw))
        if not value or any(c in value for c in "*?"):
            raise QueryError(
                f"{upper} level unique key {kw} must have a value for a {level} level query"
            )


def _joins() -> dict[str, Any]:
    i, s, st, p = idx.instance, idx.series, idx.study, idx.patient
    return {
        "PATIENT": p,
        "STUDY": st.join(p),
        "SERIES": s.join(st).join(p),
        "IMAGE": i.join(s).join(st).join(p),
    }


# A join is an immutable SQL expression: built once, not per query (deriving its ON
# clause from the foreign keys took a fifth of a simple search's time).
_JOINS = _joins()
_INSTANCE_TO_STUDY = idx.instance.join(idx.series).join(idx.study)
_SERIES_TO_STUDY = idx.series.join(idx.study)


# The SELECTs a search's results are built with depend on the level only: built once,
# with the primary keys as an expanding parameter (PKS), so that a search spends its
# time in the database rather than in composing the same SQL again.
PKS: sa.BindParameter[list[int]] = sa.bindparam("pks", expanding=True)


def _pks_in(column: Any, dialect: str) -> Any:
    """`column IN (the primary keys)` as one parameter, whatever their number: a JSON
    array that SQLite's json_each lists, a PostgreSQL array.  Rendering 500 parameters
    of an expanding IN took longer than the computed attributes' queries themselves
    (`_pk_list` gives the value to bind)."""
    if dialect == "sqlite":
        listed: Any = sa.select(sa.column("value")).select_from(
            sa.func.json_each(sa.bindparam("pk_list"))
        )
        return column.in_(listed.scalar_subquery())
    if dialect == "postgresql":
        return column == sa.any_(sa.bindparam("pk_list", type_=ARRAY(sa.Integer)))
    return column.in_(PKS)


def _pk_list(dialect: str, pks: list[int]) -> dict[str, Any]:
    """The parameters of `_pks_in` for `pks`."""
    if dialect == "sqlite":
        return {"pk_list": json.dumps(pks)}
    if dialect == "postgresql":
        return {"pk_list": pks}
    return {"pks": pks}


def _join_up(level: str) -> Any:
    """The level's table joined to every level above it."""
    return _JOINS[level]


def _condition(attr: Attribute, matcher: Matcher) -> Any:
    """The matcher's SQL over the attribute's column (and its ``_norm`` twin for PN)."""
    table = _BASE[attr.level]
    norm = table.c[attr.column + "_norm"] if attr.vr == "PN" else None
    return matcher.sql(table.c[attr.column], norm)


# Aliases: at the series and instance levels the outer query selects from these tables
# too, and the subquery must range over all of the study's rows, correlated to the study
# only (a study attribute in a lower-level search, PS3.18 10.6.1.2).  Made once: an
# alias builds a proxy of every column of its table (a third of a combination search).
_STUDY_SERIES = idx.series.alias("study_series")
_STUDY_INSTANCE = idx.instance.alias("study_instance")


def _computed_condition(attr: Attribute, matcher: Matcher) -> Any:
    """Modalities / SOP Classes in Study: the study matches when any of its series
    (instances) has a value the matcher accepts (EXISTS over one row per value)."""
    s, i = _STUDY_SERIES, _STUDY_INSTANCE
    if attr.keyword == "ModalitiesInStudy":
        return (
            sa.exists()
            .where(s.c.study_pk == idx.study.c.pk, matcher.sql(s.c.modality))
            .correlate(idx.study)
        )
    if attr.keyword == "SOPClassesInStudy":
        return (
            sa.exists()
            .where(
                s.c.study_pk == idx.study.c.pk,
                i.c.series_pk == s.c.pk,
                matcher.sql(i.c.sop_class_uid),
            )
            .correlate(idx.study)
        )
    return sa.true()  # counts are return keys only


# --------------------------------------------------------------------- results
def _wants_metadata(query: Query, level: str) -> bool:
    if query.include_all:
        return True
    return bool(query.sequence_keys) or any(tag not in BY_TAG for tag in query.keys)


def _representatives(conn: Connection, level: str, pks: list[int]) -> dict[int, dict[str, Any]]:
    """DICOM JSON of one instance per result (the first stored), for non-indexed keys."""
    if not pks:
        return {}
    out: dict[int, dict[str, Any]] = {}
    for chunk in _chunks(pks, 500):
        for g, text in conn.execute(_representative_select(level), {"pks": chunk}).all():
            out[g] = json.loads(text)
    return out


@functools.cache
def _representative_select(level: str) -> Any:
    """(result pk, metadata of its first stored instance) of each result among PKS."""
    i, s, st = idx.instance, idx.series, idx.study
    group = {
        "IMAGE": i.c.pk,
        "SERIES": i.c.series_pk,
        "STUDY": s.c.study_pk,
        "PATIENT": st.c.patient_pk,
    }[level]
    first = (
        sa.select(group.label("g"), sa.func.min(i.c.pk).label("ipk"))
        .select_from(_INSTANCE_TO_STUDY)
        .where(group.in_(PKS))
        .group_by(group)
        .subquery()
    )
    return sa.select(first.c.g, i.c.metadata).join(i, i.c.pk == first.c.ipk)


def match_stored(meta: dict[str, Any] | None, keys: list[tuple[int, Matcher]]) -> bool:
    """Every key's matcher accepts the stored DICOM JSON value (PS3.4 C.2.2.2); also
    the whole matching of work items (archive/workitem_search.py)."""
    if meta is None:
        return False
    for tag, matcher in keys:
        entry = meta.get(f"{tag:08X}") or {}
        if entry.get("vr") == "SQ" and not isinstance(matcher, SequenceMatch):
            continue  # a plain value on a sequence key: items are returned, not matched
        if not matcher.match(entry.get("Value", [])):
            return False
    return True


def _tag(keyword: str) -> int:
    tag = tag_for_keyword(keyword)
    if tag is None:
        raise KeyError(keyword)
    return int(tag)


def _vr(tag: int) -> str:
    if tag >> 16 & 1 and 0x10 <= tag & 0xFFFF <= 0xFF:
        return "LO"  # a private creator (PS3.5 7.8.1)
    try:
        return str(dictionary_VR(tag))
    except KeyError:
        return "UN"


def _chunks(items: list[int], size: int) -> Iterable[list[int]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _build(
    conn: Connection,
    query: Query,
    level: str,
    pks: list[int],
    representative: dict[int, dict[str, Any]],
    tags: set[int],
    plan: list[tuple[str, Attribute | None, str]],
    rows: ColumnRows,
) -> list[dict[str, Any]]:
    """DICOM JSON per match: requested keys (+ defaults for QIDO), from columns or metadata.

    The loop runs once per returned attribute of every match (15 000 times for 1,000
    studies): each step's kind is decided once, before it."""
    if not pks:
        return []
    computed = _computed_values(conn, level, pks, tags)
    steps = [_step(key, attr, vr, rows.positions) for key, attr, vr in plan]
    include_all = query.include_all
    by_pk = rows.rows
    out = []
    for pk in pks:
        row = by_pk[pk]
        meta = representative.get(pk, _NO_METADATA)
        result: dict[str, Any] = {}
        if include_all:
            result.update(
                {
                    k: v
                    for k, v in meta.items()
                    if "BulkDataURI" not in v and _level_ok(int(k, 16), level)
                }
            )
        for key, kind, name, vr in steps:
            if kind is _TEXT:  # _json_entry's cases, without the call
                value = row[name]
                if value is None or value == "":
                    result[key] = {"vr": vr}
                else:
                    result[key] = {"vr": vr, "Value": str(value).split("\\")}
            elif kind is _NAME:
                value = row[name]
                if value is None or value == "":
                    result[key] = {"vr": vr}
                elif "=" not in value:
                    result[key] = {"vr": vr, "Value": [{"Alphabetic": value}]}
                else:
                    result[key] = _json_entry(vr, value)
            elif kind is _NUMBER:
                result[key] = _json_entry(vr, row[name])
            elif kind is _COMPUTED:
                result[key] = computed.get((name, pk)) or {"vr": vr}
            elif kind is _ABSENT:
                result[key] = {"vr": vr}
            else:
                entry = meta.get(key)
                if entry is None:
                    entry = {"vr": vr}
                elif "BulkDataURI" in entry:  # bulk data is not returned: its VR is
                    entry = {"vr": entry.get("vr", vr)}
                result[key] = entry
        # The plan is in tag order; only the metadata of include_all needs sorting.
        out.append(dict(sorted(result.items())) if include_all else result)
    return out


# Where a step's value comes from: a column (text, person name, number), the computed
# attributes, the stored metadata, or nowhere (a column the rows lack).
_TEXT, _NAME, _NUMBER = "text", "name", "number"
_COMPUTED, _STORED, _ABSENT = "computed", "stored", "absent"
_NO_METADATA: dict[str, Any] = {}  # only read


def _step(
    key: str, attr: Attribute | None, vr: str, positions: dict[str, int]
) -> tuple[str, str, Any, str]:
    """(key, where its value comes from, the column's position in a row or the computed
    keyword, VR) of one returned tag; a column the rows lack gives an empty element."""
    if attr is None:
        return key, _STORED, "", vr
    if attr.computed:
        return key, _COMPUTED, attr.keyword, vr
    position = positions.get(attr.column)
    if position is None:
        return key, _ABSENT, "", vr
    kind = _NAME if vr == "PN" else _NUMBER if vr in _INT_VRS else _TEXT
    return key, kind, position, vr


def _return_plan(tags: set[int], level: str) -> list[tuple[str, Attribute | None, str]]:
    """(key, indexed attribute or None, VR) of each returned tag, in tag order; keys of
    levels below the query level are left out (PS3.4 C.4.1.2.1, PS3.18 10.6.3.3),
    indexed or not (`attributes.level_of`)."""
    plan = []
    for tag in sorted(tags):
        if not _level_ok(tag, level):
            continue
        attr = BY_TAG.get(tag)
        plan.append((f"{tag:08X}", attr, attr.vr if attr is not None else _json_vr(tag)))
    return plan


def _json_vr(tag: int) -> str:
    """The VR of a returned element the entity lacks: DICOM JSON names one VR (PS3.18
    F.2.3), so of a dictionary VR with alternatives ("OB or OW", "US or SS") the first;
    a stored element keeps its own."""
    return _vr(tag).split(" or ")[0]


def _level_ok(tag: int, level: str) -> bool:
    """An attribute of `level` or above it: a result may carry it (PS3.18 10.6.3.3).
    A private element belongs to no Information Entity of PS3.3, so it is returned at
    any level it is asked for, from the entity's representative instance."""
    if (tag >> 16) % 2:
        return True
    return level_index(level_of(tag)) <= level_index(level)


def _column_rows(
    conn: Connection, level: str, pks: list[int], columns: tuple[str, ...]
) -> ColumnRows:
    """The indexed `columns` (by name) of each result; columns not there are left out."""
    stmt = _column_select(level, columns)
    out = ColumnRows()
    for chunk in _chunks(pks, 500):
        found = _keyed_rows(conn.execute(stmt, {"pks": chunk}))
        out.positions = found.positions
        out.rows.update(found.rows)
    return out


def _keyed_rows(result: Any) -> ColumnRows:
    """Result pk → its row, from a SELECT whose first column is ``__pk`` (in the
    statement's order; one fetchall: fewer trips through the result)."""
    positions = {name: i for i, name in enumerate(result.keys())}
    return ColumnRows(positions, {row[0]: row for row in result.all()})


def _match_by_values(
    conn: Connection,
    level: str,
    columns: tuple[str, ...],
    indexed: list[tuple[Attribute, Matcher]],
    query: Query,
) -> ColumnRows | None:
    """The matches of a query whose every key is one comparison of one column with one
    value (a UID, an accession number, a study's series as `/studies/{uid}/series` asks,
    a name or a description with wildcards), by a statement compiled once per shape and
    run on the DB-API cursor (prepared.py): building and running it through SQLAlchemy
    cost a small search more than the database's work.  None for any other query (then
    `find` builds its statement)."""
    values: dict[str, Any] = {}
    keys: list[tuple[str, str, str]] = []
    for n, (attr, matcher) in enumerate(indexed):
        bound = _bound(attr, matcher)
        if bound is None:
            return None
        column, operator, values[f"k{n}"] = bound
        keys.append((attr.level, column, operator))
    if query.offset and query.limit is None:
        return None  # rare (QIDO-RS always has a limit), and dialects differ there
    shape = (level, columns, tuple(keys), query.limit is not None)
    if shape in _UNPREPARED:
        return None
    statement, positions = _prepared_match(shape)
    if query.limit is not None:
        values["limit"], values["offset"] = query.limit + 1, query.offset
    try:
        found = statement.all(conn, values)
    except ValueError:  # a returned column whose values SQLAlchemy would convert
        _UNPREPARED.add(shape)
        return None
    return ColumnRows(positions, {row[0]: row for row in found})


_UNPREPARED: set[tuple[Any, ...]] = set()  # shapes `Prepared` refused


def _bound(attr: Attribute, matcher: Matcher) -> tuple[str, str, str] | None:
    """(column, operator, value) of a key that is one comparison (`Matcher.comparison`:
    single values, one-UID lists, wildcards, names by their alphabetic group), on the
    column `_condition` gives the matcher; None for any other key."""
    comparison = matcher.comparison()
    if comparison is None:
        return None
    return (attr.column + "_norm" if attr.vr == "PN" else attr.column), *comparison


@functools.lru_cache(maxsize=512)
def _prepared_match(shape: tuple[Any, ...]) -> tuple[Prepared, dict[str, int]]:
    """`_match_by_values`' statement for a shape (level, returned columns, the (level,
    column, comparison) of each key, limited?) and where each returned column is in its
    rows.  A limit comes with its offset, both bound (SQLite's LIMIT always has an
    OFFSET)."""
    level, columns, keys, limit = shape
    selected = _result_columns(level, columns)
    conditions = [  # the parameters take the columns' types, as in the general path
        compare(_BASE[key_level].c[column], operator, sa.bindparam(f"k{n}"))
        for n, (key_level, column, operator) in enumerate(keys)
    ]
    stmt = _match_select(level, columns).where(*conditions)
    if limit:
        stmt = stmt.limit(sa.bindparam("limit", type_=sa.Integer))
        stmt = stmt.offset(sa.bindparam("offset", type_=sa.Integer))
    return Prepared(stmt), {c.name: i for i, c in enumerate(selected)}


@functools.lru_cache(maxsize=512)
def _match_select(level: str, columns: tuple[str, ...]) -> Any:
    """The matches' pk and named columns, in pk order: a search adds its conditions
    (built once per level and columns: building a SELECT of a few dozen columns cost
    a tenth of a small search)."""
    return (
        sa.select(*_result_columns(level, columns))
        .select_from(_join_up(level))
        .order_by(_BASE[level].c.pk)
    )


@functools.lru_cache(maxsize=512)
def _column_select(level: str, columns: tuple[str, ...]) -> Any:
    """The named columns of the level and the levels above, by the level's pk."""
    return (
        sa.select(*_result_columns(level, columns))
        .select_from(_join_up(level))
        .where(_BASE[level].c.pk.in_(PKS))
    )


@functools.lru_cache(maxsize=512)
def _result_columns(level: str, columns: tuple[str, ...]) -> list[Any]:
    """The level's pk as ``__pk``, then the named columns of the level and the levels
    above (only those a result returns: fetching all of them took most of a large
    answer's time)."""
    tables = {
        "PATIENT": [idx.patient],
        "STUDY": [idx.study, idx.patient],
        "SERIES": [idx.series, idx.study, idx.patient],
        "IMAGE": [idx.instance, idx.series, idx.study, idx.patient],
    }[level]
    base = tables[0]
    by_name = {
        c.name: c
        for table in tables
        for c in table.c
        if c.name != "pk" and not c.name.endswith("_pk") and c.name != "metadata"
    }
    return [base.c.pk.label("__pk"), *(by_name[n] for n in columns if n in by_name)]


def _computed_values(
    conn: Connection, level: str, pks: list[int], tags: set[int]
) -> dict[tuple[str, int], dict[str, Any]]:
    """Computed attributes of each result, each computed over the entity it describes:
    a series result's Modalities in Study are its study's (PS3.18 10.6.3.3)."""
    by_level: dict[str, set[str]] = {}
    for t in tags:
        attr = BY_TAG.get(t)
        # below the query level they are not returned (PS3.4 C.4.1.2.1; _return_plan)
        if attr is not None and attr.computed and level_index(attr.level) <= level_index(level):
            by_level.setdefault(attr.level, set()).add(attr.keyword)
    out: dict[tuple[str, int], dict[str, Any]] = {}
    for owner_level, wanted in by_level.items():
        if owner_level == level:
            out.update(_computed_at(conn, level, pks, wanted))
            continue
        owners = _owners(conn, level, owner_level, pks)
        values = _computed_at(conn, owner_level, sorted(set(owners.values())), wanted)
        for pk, owner in owners.items():
            for kw in wanted:
                if (kw, owner) in values:
                    out[(kw, pk)] = values[(kw, owner)]
    return out


def _owners(conn: Connection, level: str, owner_level: str, pks: list[int]) -> dict[int, int]:
    """Result pk → pk of the entity above it at `owner_level` that owns it."""
    stmt = _owner_select(level, owner_level)
    out: dict[int, int] = {}
    for chunk in _chunks(pks, 500):
        out.update((pk, owner) for pk, owner in conn.execute(stmt, {"pks": chunk}).all())
    return out


@functools.cache
def _owner_select(level: str, owner_level: str) -> Any:
    base = _BASE[level]
    return (
        sa.select(base.c.pk, _BASE[owner_level].c.pk)
        .select_from(_join_up(level))
        .where(base.c.pk.in_(PKS))
    )


def _computed_at(
    conn: Connection, level: str, pks: list[int], wanted: set[str]
) -> dict[tuple[str, int], dict[str, Any]]:
    """Computed attributes `wanted` of entities at `level` (their own level)."""
    out: dict[tuple[str, int], dict[str, Any]] = {}
    if not wanted or not pks:
        return out
    # NumberOf…Related{Studies,Series,Instances} → which count it is.
    counted = [
        (kw, noun)
        for kw in wanted
        for noun in ("Studies", "Series", "Instances")
        if kw.startswith("NumberOf") and kw.endswith("Related" + noun)
    ]
    if _GROUP.get(level) is None:
        return out
    keywords = tuple(kw for kw in ("ModalitiesInStudy", "SOPClassesInStudy") if kw in wanted)
    if not counted and not keywords:
        return out
    dialect = conn.dialect.name
    stmt = _computed_select(level, dialect, bool(counted), keywords)
    places = [(kw, ("Studies", "Series", "Instances").index(noun)) for kw, noun in counted]
    for chunk in _chunks(pks, 500):
        found: dict[tuple[int, int], list[str]] = {}
        for kind, g, n_studies, n_series, n_instances, value in stmt.all(
            conn, _pk_list(dialect, chunk)
        ):
            if kind == 0:
                counts = (n_studies, n_series, n_instances)
                for kw, place in places:
                    out[(kw, g)] = {"vr": "IS", "Value": [counts[place]]}
            elif value:
                found.setdefault((kind, g), []).append(value)
        for (kind, g), values in found.items():
            kw = keywords[kind - 1]
            out[(kw, g)] = {"vr": "CS" if kw == "ModalitiesInStudy" else "UI", "Value": values}
    return out


# The column a computed attribute of each level is grouped by.
_GROUP = {"PATIENT": idx.study.c.patient_pk, "STUDY": idx.study.c.pk, "SERIES": idx.series.c.pk}


# Where Modalities and SOP Classes in Study come from: the series' own modality (no
# need to visit every instance), each instance's SOP class.
_VALUE_SOURCES = {
    "ModalitiesInStudy": (idx.series.c.modality, _SERIES_TO_STUDY),
    "SOPClassesInStudy": (idx.instance.c.sop_class_uid, _INSTANCE_TO_STUDY),
}


@functools.cache
def _computed_select(level: str, dialect: str, counts: bool, keywords: tuple[str, ...]) -> Prepared:
    """The counts (kind 0) and the distinct values of each of `keywords` (kind 1, 2…)
    of the entities at `level` among PKS, in one statement of rows (kind, group,
    studies, series, instances, value) ordered so that each entity's values come
    sorted.  One statement rather than one per attribute: on PostgreSQL a statement is a
    round trip, as long as a small query's own work.  Its shape is fixed (the keys are
    one parameter, `_pks_in`), so it runs on the DB-API cursor (prepared.py):
    SQLAlchemy's own execution cost more than SQLite's work for a small search's few
    results."""
    return Prepared(_computed_statement(level, dialect, counts, keywords))


def _computed_statement(level: str, dialect: str, counts: bool, keywords: tuple[str, ...]) -> Any:
    """`_computed_select`'s statement."""
    i, s, st = idx.instance, idx.series, idx.study
    group = _GROUP[level]
    no_count = sa.cast(sa.null(), sa.Integer)
    parts = []
    if counts:
        # Over the series, each counting its instances in the instance index, rather
        # than over every instance row with a DISTINCT per level: 4.4 against 9.8 ms for
        # 732 studies of 80 instances (SQLite).  An empty series or study is deleted
        # with its last instance (_delete_empty_parents), so both count the same.
        instances = (
            sa.select(sa.func.count())
            .select_from(i)
            .where(i.c.series_pk == s.c.pk)
            .correlate(s)
            .scalar_subquery()
        )
        parts.append(
            sa.select(
                sa.literal_column("0", sa.Integer).label("kind"),
                group.label("g"),
                # studies are counted for a patient only (a DISTINCT costs a sort)
                sa.func.count(sa.distinct(st.c.pk)) if level == "PATIENT" else no_count,
                sa.func.count(s.c.pk),
                sa.cast(sa.func.sum(instances), sa.Integer),  # PostgreSQL's sum is numeric
                sa.cast(sa.null(), sa.String).label("value"),
            )
            .select_from(_SERIES_TO_STUDY)
            .where(_pks_in(group, dialect))
            .group_by(group)
        )
    for kind, keyword in enumerate(keywords, start=1):
        column, source = _VALUE_SOURCES[keyword]
        parts.append(
            sa.select(
                sa.literal_column(str(kind), sa.Integer).label("kind"),
                group.label("g"),
                no_count,
                no_count,
                no_count,
                column.label("value"),
            )
            .select_from(source)
            .where(_pks_in(group, dialect))
            .distinct()
        )
    order: list[Any] = [sa.literal_column(name) for name in ("kind", "g", "value")]
    if len(parts) == 1:
        return parts[0].order_by(*order)
    return sa.union_all(*parts).order_by(*order)


def _json_entry(vr: str, value: Any) -> dict[str, Any]:
    """A DICOM JSON element from an index column value."""
    if value is None or value == "":
        return {"vr": vr}
    if vr == "PN":
        if "=" not in value:  # most names: one (Alphabetic) component group
            return {"vr": vr, "Value": [{"Alphabetic": value}]}
        groups = str(value).split("=")
        names = dict(zip(("Alphabetic", "Ideographic", "Phonetic"), groups, strict=False))
        return {"vr": vr, "Value": [{k: v for k, v in names.items() if v}]}
    if vr in _INT_VRS:
        return {"vr": vr, "Value": [int(value)]}
    return {"vr": vr, "Value": str(value).split("\\")}


def query_from_keywords(level: str, params: dict[str, str], **kwargs: Any) -> Query:
    """Build a Query from keyword/tag → value pairs (CLI and QIDO-RS).

    A dotted name (``ReferencedStudySequence.ReferencedSOPInstanceUID`` or
    ``00081110.00081155``, PS3.18 8.3.4.1) is a key of the sequence's item (sequence
    matching, one level deep)."""
    from isthmus.archive.attributes import resolve_tag

    keys: dict[int, str] = {}
    sequences: dict[int, dict[int, str]] = {}
    for name, value in params.items():
        try:
            path = [resolve_tag(part) for part in name.split(".")]
        except KeyError as exc:
            raise QueryError(str(exc)) from None
        if len(path) == 1:
            keys[path[0]] = value
        elif len(path) == 2 and _vr(path[0]) == "SQ":
            sequences.setdefault(path[0], {})[path[1]] = value
        else:
            raise QueryError(f"{name[:80]!r}: only one level of sequence items can be matched")
    return Query(level=level.upper(), keys=keys, sequence_keys=sequences, **kwargs)


__all__ = ["Query", "QueryError", "FindResult", "find", "query_from_keywords", "keyword_of"]
