"""One matcher per key: the SQL over an index column and the check over stored DICOM JSON.

A C-FIND identifier or a QIDO-RS search names keys; each key with a value becomes one
matcher (`matcher_for`).  A matcher answers the same question twice:

- `Matcher.sql(column, norm)`: a SQLAlchemy Core condition over the index column that
  holds the attribute (for person names also the upper-cased alphabetic column);
- `Matcher.match(values)`: the same condition over the ``"Value"`` list of the
  attribute in an instance's stored DICOM JSON (PS3.18 F.2), for keys that are not
  columns;
- `Matcher.comparison()`: for a rule that is one comparison of its column with one
  value, that comparison, which `sql` is built from too, so that a statement of fixed
  shape can bind the value (`matching._match_by_values`).

Both are built from one parsed key (validated once, by `matcher_for`: an invalid
DA/TM/DT/UID/number raises `QueryError` before either path runs, whether or not the
attribute is a column), so SQL and Python cannot disagree.  ``tests/archive/test_matchers.py`` runs every rule through both
paths on the same data.

The rules (PS3.4 C.2.2.2; each class says why):

=========================  =====================================================
single value  C.2.2.2.1    `Exact` (text, DA), `Number` (IS/DS/US/…), `PersonName`
list of UIDs  C.2.2.2.2    `UidList` (also a single UID)
universal     C.2.2.2.3    no matcher: `matcher_for` returns None for ``""``/``*``
wildcard      C.2.2.2.4    `Wildcard`; not for DA/TM/DT/UI/numbers (refused)
range         C.2.2.2.5    `Between` (DA ranges; TM values and ranges as intervals),
                           `DateTimeRange` (DT, on UTC instants; stored JSON only)
sequence      C.2.2.2.6    `SequenceMatch` (stored JSON only)
fuzzy names   PS3.18       `FuzzyName` (QIDO-RS ``fuzzymatching=true``, 8.3.4.1)
multiple values            `AnyOf`: a key ``a\\b`` matches when any value matches
=========================  =====================================================

A column holds one value (every indexed attribute has VM 1; multi-valued computed
keys such as Modalities in Study are matched with EXISTS over one row per value), and a
stored attribute matches when any of its values does.
"""

from __future__ import annotations

import itertools
import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from functools import lru_cache
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

from isthmus.dicom.uids import looks_like_uid

INT_VRS = frozenset({"IS", "US", "UL", "SL", "SS", "SV", "UV"})
FLOAT_VRS = frozenset({"DS", "FL", "FD"})
# PS3.4 C.2.2.2.4: wildcards are not defined for these VRs (nor for numbers).
NO_WILDCARD_VRS = frozenset({"DA", "TM", "DT", "UI", "AT"}) | INT_VRS | FLOAT_VRS
BINARY_VRS = frozenset({"OB", "OW", "OF", "OD", "OL", "OV"})
# Values of one key (a list ``a\\b\\…``; words of a fuzzy name): each is an SQL term.
# UID lists are one IN (…) and are not limited here.
MAX_KEY_VALUES = 100

Condition = ColumnElement[bool]
EQUALS, LIKE = "=", "like"  # the operators of `Matcher.comparison`


def compare(column: Any, operator: str, value: Any) -> Condition:
    """`column = value`, or `column LIKE value ESCAPE '\\'` with `value` a `like_pattern`
    (`value` may be a bound parameter)."""
    if operator == EQUALS:
        return column == value  # type: ignore[no-any-return]
    return column.like(value, escape="\\")  # type: ignore[no-any-return]


class QueryError(ValueError):
    """A query that cannot be run as asked; the message is meant for the caller."""


class Matcher(ABC):
    """One key's matching rule, as SQL and as a check of stored values."""

    #: False for rules whose SQL form is not defined (then the key must not be a column).
    indexable: bool = True

    @abstractmethod
    def sql(self, column: Any, norm: Any = None) -> Condition:
        """The condition over `column` (one value per row; `norm` for person names)."""

    @abstractmethod
    def match(self, values: Sequence[Any]) -> bool:
        """True when any of the stored DICOM JSON `values` satisfies the rule."""

    def comparison(self) -> tuple[str, str] | None:
        """(`EQUALS` or `LIKE`, value) when the rule is one comparison of its column (the
        upper-cased one for person names) with one value, as `sql` writes it; None for
        any other rule."""
        return None


# ------------------------------------------------------------------------- text
def like_pattern(value: str) -> str:
    """A DICOM wildcard value as a LIKE pattern with ``\\`` as the escape character:
    ``*`` → ``%``, ``?`` → ``_``, and SQL's own ``%``, ``_`` and ``\\`` are literal."""
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


@dataclass(frozen=True)
class Glob:
    """A wildcard value matched against a whole string without backtracking blow-up.

    A regular expression of the value (``*`` → ``.*``) backtracks exponentially on a
    hostile key such as ``*S*S*S*S*S*S*S*S*S*S*x`` (seconds per candidate at five stars,
    hours at ten: issue 15); this greedy match returns to the last ``*`` only, so it costs
    at most len(value) × len(text) steps."""

    value: str

    def fullmatch(self, text: str) -> bool:
        p, t = self.value, text
        pi = ti = 0
        star, mark = -1, 0
        while ti < len(t):
            if pi < len(p) and p[pi] == "*":
                star, mark = pi, ti
                pi += 1
            elif pi < len(p) and (p[pi] == "?" or p[pi] == t[ti]):
                pi += 1
                ti += 1
            elif star >= 0:
                pi, mark = star + 1, mark + 1
                ti = mark
            else:
                return False
        while pi < len(p) and p[pi] == "*":
            pi += 1
        return pi == len(p)


@lru_cache(maxsize=1024)
def wildcard_regex(value: str) -> Glob:
    """The same wildcard value as a whole-string matcher (`Glob.fullmatch`; cached: the
    stored-JSON path checks one key against every candidate)."""
    return Glob(value)


def has_wildcard(value: str) -> bool:
    return "*" in value or "?" in value


def _text(value: Any) -> str:
    return "" if value is None else str(value)


@dataclass(frozen=True)
class Exact(Matcher):
    """Single value matching (PS3.4 C.2.2.2.1): the whole value, case-sensitively.

    The stored value is compared as the index holds it (leading/trailing spaces are
    not significant, PS3.5 6.2, and are not stored)."""

    value: str

    def comparison(self) -> tuple[str, str]:
        return EQUALS, self.value

    def sql(self, column: Any, norm: Any = None) -> Condition:
        return compare(column, *self.comparison())

    def match(self, values: Sequence[Any]) -> bool:
        return any(_text(v).strip() == self.value for v in values)


@dataclass(frozen=True)
class Wildcard(Matcher):
    """Wildcard matching (PS3.4 C.2.2.2.4): ``*`` any run of characters (also none),
    ``?`` exactly one character; everything else literally and case-sensitively.

    SQL is ``LIKE … ESCAPE '\\'`` (SQLite runs with ``case_sensitive_like``, PostgreSQL's
    LIKE is case-sensitive), so a value starting with literal characters keeps the
    prefix index usable."""

    value: str

    def comparison(self) -> tuple[str, str]:
        return LIKE, like_pattern(self.value)

    def sql(self, column: Any, norm: Any = None) -> Condition:
        return compare(column, *self.comparison())

    def match(self, values: Sequence[Any]) -> bool:
        regex = wildcard_regex(self.value)
        return any(regex.fullmatch(_text(v).strip()) for v in values)


def text_matcher(value: str) -> Matcher:
    return Wildcard(value) if has_wildcard(value) else Exact(value)


# ------------------------------------------------------------------------ numbers
@dataclass(frozen=True)
class Number(Matcher):
    """Single value matching of a number (IS, DS, US, UL, SL, SS, FL, FD): equal as a
    number, so ``2`` matches a stored ``2.0``.  Wildcards and ranges are not defined for
    numbers (PS3.4 C.2.2.2.4, C.2.2.2.5): such a key is a `QueryError`."""

    value: float

    def sql(self, column: Any, norm: Any = None) -> Condition:
        wanted: float | int = int(self.value) if self.value.is_integer() else self.value
        return column == wanted  # type: ignore[no-any-return]

    def match(self, values: Sequence[Any]) -> bool:
        for v in values:
            try:
                if float(v) == self.value:
                    return True
            except (TypeError, ValueError):
                continue
        return False


def number_matcher(keyword: str, vr: str, value: str) -> Number:
    try:
        number = float(value) if vr in FLOAT_VRS else float(int(value))
    except ValueError:
        kind = "an integer" if vr in INT_VRS else "a number"
        raise QueryError(f"{keyword}: {value!r} is not {kind}") from None
    if number != number or number in (float("inf"), float("-inf")):
        raise QueryError(f"{keyword}: {value!r} is not a number")
    return Number(number)


# --------------------------------------------------------------------------- UIDs
@dataclass(frozen=True)
class UidList(Matcher):
    """List of UID matching (PS3.4 C.2.2.2.2): ``uid1\\uid2\\…`` matches any of them; one
    UID is the one-element list.  UIDs never take wildcards (C.2.2.2.4), so ``1.2.*`` is
    an invalid UID, not a pattern: every value must look like a UID (PS3.5 9.1)."""

    uids: tuple[str, ...]

    def comparison(self) -> tuple[str, str] | None:
        return (EQUALS, self.uids[0]) if len(self.uids) == 1 else None

    def sql(self, column: Any, norm: Any = None) -> Condition:
        if len(self.uids) == 1:
            return compare(column, EQUALS, self.uids[0])
        return column.in_(self.uids)  # type: ignore[no-any-return]

    def match(self, values: Sequence[Any]) -> bool:
        return any(_text(v).strip() in self.uids for v in values)


def uid_matcher(keyword: str, value: str) -> UidList:
    uids = tuple(u.strip() for u in value.split("\\") if u.strip())
    for uid in uids:
        if not looks_like_uid(uid):
            raise QueryError(f"{keyword}: {uid[:80]!r} is not a UID (digits and dots)")
    if not uids:
        raise QueryError(f"{keyword}: empty list of UIDs")
    return UidList(uids)


# ------------------------------------------------------------------ dates, times
_DA_RE = re.compile(r"\d{8}")
_TM_RE = re.compile(r"(\d{2})(\d{2})?(\d{2})?(?:\.(\d{1,6}))?")
_DT_RE = re.compile(
    r"(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(?:\.(\d{1,6}))?(?:([+-])(\d{2})(\d{2}))?"
)


def check_date(keyword: str, value: str) -> str:
    """A DA value (YYYYMMDD, PS3.5 6.2) that is a real calendar date, or QueryError."""
    if not _DA_RE.fullmatch(value):
        raise QueryError(f"{keyword}: {value!r} is not a valid DA value (YYYYMMDD)")
    try:
        date(int(value[:4]), int(value[4:6]), int(value[6:8]))
    except ValueError:
        raise QueryError(f"{keyword}: {value!r} is not a valid date") from None
    return value


def check_time(keyword: str, value: str) -> str:
    """A TM value (HH[MM[SS[.F{1,6}]]], PS3.5 6.2) with hours 00-23, minutes 00-59 and
    seconds 00-60 (a leap second), or QueryError.  A fraction needs whole seconds."""
    m = _TM_RE.fullmatch(value)
    if not m or (m.group(4) is not None and m.group(3) is None):
        raise QueryError(f"{keyword}: {value!r} is not a valid TM value (HHMMSS.FFFFFF)")
    hh, mm, ss = (int(g) if g else 0 for g in m.group(1, 2, 3))
    if hh > 23 or mm > 59 or ss > 60:
        raise QueryError(f"{keyword}: {value!r} is not a valid time")
    return value


def _time_upper(value: str) -> str:
    """The last moment a TM denotes: ``14`` → ``145959.999999``, ``1415`` →
    ``141559.999999``, ``141500.5`` → ``141500.599999`` (PS3.5 6.2: trailing
    components may be omitted; the value then names the whole hour/minute/second)."""
    whole, _, frac = value.partition(".")
    tail = {2: "5959", 4: "59", 6: ""}[len(whole)]
    return whole + tail + "." + (frac + "9" * 6)[:6]


def _time_lower(value: str) -> str:
    """A lower bound for the stored TM strings that start at or after `value`: the value
    without trailing zero components (``140000`` → ``14``, ``141500.50`` → ``141500.5``).

    Stored times may be partial too (``1415`` starts at 14:15:00); string order puts
    ``1415`` before ``141500``, so the bound drops what padding would add.  Every
    stored value at or after the bound in string order starts at or after it in time."""
    whole, _, frac = value.partition(".")
    frac = frac.rstrip("0")
    if frac:
        return whole + "." + frac
    while len(whole) > 2 and whole.endswith("00"):
        whole = whole[:-2]
    return whole


def split_range(keyword: str, value: str) -> tuple[str, str]:
    """``A-B``, ``A-`` or ``-B`` → (A, B), one end possibly empty (PS3.4 C.2.2.2.5)."""
    if value.count("-") != 1:
        raise QueryError(f"{keyword}: invalid range {value!r}")
    lo, hi = value.split("-")
    if not lo and not hi:
        raise QueryError(f"{keyword}: invalid range {value!r} (no end given)")
    return lo, hi


@dataclass(frozen=True)
class Between(Matcher):
    """Stored values between two bounds, inclusive, compared as the index stores them
    (fixed-width digit strings, so string order is time order).  Either bound may be
    None (an open range).  Used by `date_matcher` and `time_matcher`."""

    lo: str | None
    hi: str | None

    def sql(self, column: Any, norm: Any = None) -> Condition:
        conds = []
        if self.lo is not None:
            conds.append(column >= self.lo)
        if self.hi is not None:
            conds.append(column <= self.hi)
        return sa.and_(*conds)

    def match(self, values: Sequence[Any]) -> bool:
        for v in values:
            text = _text(v).strip()
            if not text:
                continue
            if (self.lo is None or text >= self.lo) and (self.hi is None or text <= self.hi):
                return True
        return False


def date_matcher(keyword: str, value: str) -> Matcher:
    """DA: single value (PS3.4 C.2.2.2.1) is equality; ``A-B``, ``A-`` and ``-B`` are
    inclusive, possibly open ranges (C.2.2.2.5).  Every given date must be a real date,
    and a range must not end before it starts."""
    if "-" not in value:
        return Exact(check_date(keyword, value))
    lo, hi = split_range(keyword, value)
    lo_v = check_date(keyword, lo) if lo else None
    hi_v = check_date(keyword, hi) if hi else None
    if lo_v and hi_v and lo_v > hi_v:
        raise QueryError(f"{keyword}: range {value!r} ends before it starts")
    return Between(lo_v, hi_v)


def time_matcher(keyword: str, value: str) -> Matcher:
    """TM: a single value names the interval of its precision, and matches every stored
    time in it (``1415`` matches 14:15:00 to 14:15:59.999999; ``141500`` 14:15:00 to
    14:15:00.999999; ``141500.5`` 14:15:00.5 to 14:15:00.599999).

    Why: PS3.5 6.2 lets a TM omit trailing components, so ``1415`` is a time of minute
    precision, and C.2.2.2.1 single value matching of it is "the same time" at that
    precision; this is also what range matching (C.2.2.2.5) gives for ``1415-1415``,
    so a single value and the degenerate range agree.  Both paths used to differ here
    (SQL took the interval, the stored-JSON path compared strings).  Ranges ``A-B``,
    ``A-`` and ``-B`` run from the first moment of A to the last moment of B.  A stored
    partial time is the moment it starts at (stored ``1415`` matches ``141500``).

    Combined DA-TM range matching (C.2.2.2.5: Study Date and Study Time ranges read as
    one date-time range) is only in force when negotiated with extended negotiation,
    which the SCP does not offer; date and time keys match independently."""
    if "-" not in value:
        check_time(keyword, value)
        return Between(_time_lower(value), _time_upper(value))
    lo, hi = split_range(keyword, value)
    lo_v = _time_lower(check_time(keyword, lo)) if lo else None
    hi_v = _time_upper(check_time(keyword, hi)) if hi else None
    if lo_v and hi_v and lo_v > hi_v:
        raise QueryError(f"{keyword}: range {value!r} ends before it starts")
    return Between(lo_v, hi_v)


# ----------------------------------------------------------------------- DT
@dataclass(frozen=True)
class Moment:
    """A DT value as the interval [start, end) of UTC instants it denotes."""

    start: datetime
    end: datetime


def parse_datetime(value: str) -> Moment | None:
    """A DT value (PS3.5 6.2: YYYY[MM[DD[HH[MM[SS[.F{1,6}]]]]]][&ZZXX]) as its interval
    of precision, in UTC; None when it is not a valid DT.  A value without an offset
    from UTC is taken as UTC (the archive has no other time zone to assume)."""
    m = _DT_RE.fullmatch(value)
    if not m:
        return None
    year, month, day, hour, minute, second, frac, sign, oh, om = m.groups()
    if frac is not None and second is None:
        return None
    try:
        tz = UTC
        if sign:
            if int(om) > 59:
                return None
            offset = timedelta(hours=int(oh), minutes=int(om))
            if sign == "-":
                offset = -offset
            if not timedelta(hours=-12) <= offset <= timedelta(hours=14):
                return None
            tz = timezone(offset)
        sec = int(second or 0)
        if sec > 60:
            return None
        leap = sec == 60
        start = datetime(
            int(year),
            int(month or 1),
            int(day or 1),
            int(hour or 0),
            int(minute or 0),
            59 if leap else sec,
            int((frac or "").ljust(6, "0")),
            tzinfo=tz,
        )
    except ValueError:
        return None
    if frac is not None:
        step = timedelta(microseconds=10 ** (6 - len(frac)))
    elif second is not None:
        step = timedelta(seconds=1)
    elif minute is not None:
        step = timedelta(minutes=1)
    elif hour is not None:
        step = timedelta(hours=1)
    elif day is not None:
        step = timedelta(days=1)
    elif month is not None:
        nxt = date(start.year + start.month // 12, start.month % 12 + 1, 1)
        step = datetime(nxt.year, nxt.month, 1, tzinfo=tz) - start
    else:
        step = datetime(start.year + 1, 1, 1, tzinfo=tz) - start
    return Moment(start.astimezone(UTC), (start + step).astimezone(UTC))


@dataclass(frozen=True)
class DateTimeRange(Matcher):
    """DT: single value and range matching (PS3.4 C.2.2.2.1, C.2.2.2.5) on instants.

    The key denotes an interval of UTC instants: a single value the interval of its
    precision (``2020`` is all of 2020, ``202003101415+0100`` that minute at UTC+1),
    ``A-B`` from the start of A to the end of B, ``A-``/``-B`` open at one end.  A stored
    value matches when the instant it starts at lies in that interval, offsets from UTC
    (``&ZZXX``) applied on both sides, so ``20200310141500+0100`` matches
    ``20200310131500+0000``.  No DT attribute is an index column (string order is not
    instant order once offsets differ), so this rule has no SQL form (`indexable` is
    False) and only runs over stored JSON."""

    start: datetime | None
    end: datetime | None
    indexable = False

    def sql(self, column: Any, norm: Any = None) -> Condition:
        raise TypeError("DT keys are matched over stored values only (no index column)")

    def match(self, values: Sequence[Any]) -> bool:
        for v in values:
            moment = parse_datetime(_text(v).strip())
            if moment is None:
                continue
            if (self.start is None or moment.start >= self.start) and (
                self.end is None or moment.start < self.end
            ):
                return True
        return False


def datetime_matcher(keyword: str, value: str) -> DateTimeRange:
    """Parse a DT key: a single value or a range (a ``-`` that is not an offset sign).

    ``20200101-0500`` is the single value with offset -05:00 (a range ending in the year
    0500 would end before it starts); otherwise exactly one ``-`` must split the value
    into valid DT values."""
    single = parse_datetime(value)
    if single is not None:
        return DateTimeRange(single.start, single.end)
    candidates = []
    for pos in [i for i, ch in enumerate(value) if ch == "-"]:
        lo, hi = value[:pos], value[pos + 1 :]
        if not lo and not hi:
            continue
        lo_m = parse_datetime(lo) if lo else None
        hi_m = parse_datetime(hi) if hi else None
        if (lo and lo_m is None) or (hi and hi_m is None):
            continue
        candidates.append((lo_m, hi_m))
    if len(candidates) != 1:
        raise QueryError(f"{keyword}: {value!r} is not a valid DT value or range")
    lo_m, hi_m = candidates[0]
    if lo_m and hi_m and lo_m.start >= hi_m.end:
        raise QueryError(f"{keyword}: range {value!r} ends before it starts")
    return DateTimeRange(lo_m.start if lo_m else None, hi_m.end if hi_m else None)


# --------------------------------------------------------------------- person names
_WORD_SPLIT = re.compile(r"[\^ ,]+")


def pn_text(value: Any) -> str:
    """A stored PN value (DICOM JSON object) as the index holds it: its component
    groups ``alphabetic=ideographic=phonetic`` (PS3.5 6.2.1), trailing empty groups
    dropped."""
    if not isinstance(value, dict):
        return _text(value).strip()
    groups = [
        _text(value.get("Alphabetic")),
        _text(value.get("Ideographic")),
        _text(value.get("Phonetic")),
    ]
    while groups and not groups[-1]:
        groups.pop()
    return "=".join(groups).strip()


def pn_canonical(text: str) -> str:
    """A PN value in its shortest form: each component group without the delimiters of
    its trailing empty components, and without trailing empty groups.  PS3.5 6.2.1.1
    and 6.2.1.2 let both be omitted, so ``SMITH^JOHN^^^``, ``SMITH^JOHN==`` and
    ``SMITH^JOHN`` are one name, which matching compares in this form."""
    groups = [group.rstrip("^") for group in text.split("=")]
    while groups and not groups[-1]:
        groups.pop()
    return "=".join(groups)


def pn_canonical_sql(column: Any) -> Any:
    """`pn_canonical` in SQL over a PN column (``alpha=ideo=phon`` as stored): the
    delimiters of trailing empty components before each ``=`` (a group has at most
    four delimiters, PS3.5 6.2.1.1), then the trailing ``^`` and ``=``.  ``replace``
    and two-argument ``rtrim`` are the same in SQLite and PostgreSQL."""
    for _ in range(4):
        column = sa.func.replace(column, "^=", "=")
    return sa.func.rtrim(column, "^=")


def pn_norm(text: str) -> str:
    """The alphabetic group in its shortest form (`pn_canonical`), upper-cased: the
    ``*_norm`` column (ingest.normalize_pn; migration 11 made the existing rows so)."""
    return text.split("=", 1)[0].rstrip("^").upper()


def pn_patterns(group: str) -> tuple[str, ...]:
    """The patterns one key component group (in its shortest form) is matched with
    against a stored group in its shortest form: any may match; () for an empty key
    group, which matches anything.

    A wildcard after empty components may stand for none of them: ``SMITH^*`` (any
    given name, PS3.4 C.2.2.2.4) finds ``SMITH^JOHN`` and ``SMITH`` (``SMITH^`` with its
    delimiter omitted, PS3.5 6.2.1.1), not ``SMITHSON``.  So a key that ends in a run
    of ``^`` and ``*`` is its stem (what comes before the run) followed by the run's
    ``^`` before its first ``*`` and one ``*``, or the stem alone.  A ``?`` stands for a
    character of the name, never for an omitted delimiter."""
    if not group:
        return ()
    stem = group.rstrip("^*")
    tail = group[len(stem) :]
    if "*" not in tail:
        return (group,)
    carets = len(tail) - len(tail.lstrip("^"))
    wildcard = stem + "^" * carets + "*"
    return (wildcard, stem) if carets else (wildcard,)


@dataclass(frozen=True)
class PersonName(Matcher):
    """Person name matching (PS3.4 C.2.2.2.1 single value, C.2.2.2.4 wildcard).

    - Names are compared in their shortest form (`pn_canonical`, `pn_patterns`):
      trailing empty components and groups may be omitted (PS3.5 6.2.1.1, 6.2.1.2),
      so the key ``SMITH^JOHN^^^`` finds a stored ``SMITH^JOHN`` and ``SMITH^JOHN``
      a stored ``SMITH^JOHN^^^``.
    - The **alphabetic** component group is matched case-insensitively: C.2.2.2.1
      allows PN matching "insensitive to some or all aspects of case"; the index holds
      it upper-cased (``*_norm``) and the key is upper-cased too, so ``smith*`` finds
      ``Smith^Anna`` and the SQL stays an indexable ``norm LIKE 'SMITH%'``.
    - A key with component groups (``alpha=ideographic=phonetic``, PS3.5 6.2.1.2)
      matches group by group: every group the key gives must match the stored group in
      the same position (an empty key group matches anything, a stored group that is
      absent is empty); ideographic and phonetic groups are matched as given (exactly
      or with wildcards).  So ``=山田^太郎`` finds ``Yamada^Tarou=山田^太郎=やまだ^たろう``
      and ``=やまだ^たろう`` (a phonetic name in the ideographic place) does not.

    In SQL the groups are checked on the full column ``alpha=ideo=phon`` in its shortest
    form (`pn_canonical_sql`): one LIKE per possible number of stored groups (and
    pattern of each group), each guarded by that number of ``=`` (a stored group never
    contains ``=``, so a wildcard cannot run across a group boundary).
    """

    groups: tuple[str, ...]  # the key's groups in their shortest form, alphabetic upper-cased

    @classmethod
    def of(cls, value: str) -> PersonName:
        """The matcher of one key value (groups split at ``=``)."""
        groups = pn_canonical(value).split("=")
        return cls((groups[0].upper(), *groups[1:]))

    def comparison(self) -> tuple[str, str] | None:
        """The alphabetic group's comparison on the upper-cased column, for a key that
        gives no other group and is one pattern."""
        patterns = pn_patterns(self.groups[0])
        if len(patterns) != 1 or any(self.groups[1:]):
            return None
        return text_matcher(patterns[0]).comparison()

    def sql(self, column: Any, norm: Any = None) -> Condition:
        if norm is None:
            raise TypeError("person name matching needs the upper-cased (norm) column")
        conds: list[Condition] = []
        alpha = pn_patterns(self.groups[0])
        if alpha:
            conds.append(sa.or_(*[text_matcher(p).sql(norm) for p in alpha]))
        if any(self.groups[1:]):
            conds.append(self._groups_sql(pn_canonical_sql(column)))
        return sa.and_(*conds) if conds else sa.true()

    def _groups_sql(self, column: Any) -> Condition:
        rest = [pn_patterns(g) for g in (list(self.groups[1:]) + ["", ""])[:2]]
        branches: list[Condition] = []
        shapes = [
            ~column.like("%=%"),
            sa.and_(column.like("%=%"), ~column.like("%=%=%")),
            column.like("%=%=%"),
        ]
        for stored_groups in (1, 2, 3):
            present = rest[: stored_groups - 1]
            absent = rest[stored_groups - 1 :]
            if any(g and not any(wildcard_regex(p).fullmatch("") for p in g) for g in absent):
                continue  # the key asks for a group the stored name lacks
            for chosen in itertools.product(*[g or ("*",) for g in present]):
                pattern = "=".join(["%", *[like_pattern(p) for p in chosen]])
                branches.append(
                    sa.and_(shapes[stored_groups - 1], column.like(pattern, escape="\\"))
                )
        return sa.or_(*branches) if branches else sa.false()

    def match(self, values: Sequence[Any]) -> bool:
        return any(self._match_one(pn_text(v)) for v in values)

    def _match_one(self, text: str) -> bool:
        if not text:
            return False
        stored = (pn_canonical(text).split("=") + ["", ""])[:3]
        stored[0] = pn_norm(text)
        for key_group, stored_group in zip(self.groups, stored, strict=False):
            patterns = pn_patterns(key_group)
            if patterns and not any(wildcard_regex(p).fullmatch(stored_group) for p in patterns):
                return False
        return True


@dataclass(frozen=True)
class FuzzyName(Matcher):
    """Fuzzy person name matching (QIDO-RS ``fuzzymatching=true``, PS3.18 8.3.4.1).

    The standard does not define the rule (it is the implementation's "fuzzy semantic
    matching"); C-FIND has no flag for it here (the SCP does not offer extended
    negotiation), but the engine is shared, so `Query.fuzzy` turns it on for either.

    The rule: split the key into words (at ``^``, spaces and commas); a name matches
    when every word is the start of some word of its alphabetic group, ignoring case.
    ``john`` finds ``SMITH^JOHN`` and ``SMYTHE^JOHN``; ``sm jo`` finds both; order does
    not matter.  It applies to a key of one component group without wildcards (a key
    with ``*``/``?`` or ``=`` is matched as `PersonName`).  Diacritics are significant
    in SQL (the index holds the upper-cased name, not a folded one), so the Python path
    keeps them significant too.

    SQL: per word ``norm LIKE 'W%' OR norm LIKE '%^W%' OR norm LIKE '% W%'`` (the first
    term can use the index)."""

    words: tuple[str, ...]

    def sql(self, column: Any, norm: Any = None) -> Condition:
        if norm is None:
            raise TypeError("person name matching needs the upper-cased (norm) column")
        conds = []
        for word in self.words:
            pat = like_pattern(word)
            conds.append(
                sa.or_(
                    norm.like(pat + "%", escape="\\"),
                    norm.like("%^" + pat + "%", escape="\\"),
                    norm.like("% " + pat + "%", escape="\\"),
                )
            )
        return sa.and_(*conds)

    def match(self, values: Sequence[Any]) -> bool:
        for v in values:
            names = [w for w in re.split(r"[\^ ]+", pn_norm(pn_text(v))) if w]
            if all(any(n.startswith(word) for n in names) for word in self.words):
                return True
        return False


def person_name_matcher(keyword: str, value: str, fuzzy: bool) -> Matcher | None:
    groups = tuple(value.split("="))
    if len(groups) > 3:
        raise QueryError(f"{keyword}: {value[:80]!r} has more than three component groups")
    if fuzzy and len(groups) == 1 and not has_wildcard(value):
        words = tuple(w for w in _WORD_SPLIT.split(value.upper()) if w)
        if len(words) > MAX_KEY_VALUES:
            raise QueryError(f"{keyword}: more than {MAX_KEY_VALUES} words to match")
        return FuzzyName(words) if words else None
    matcher = PersonName.of(value)
    if all(g in ("", "*") for g in matcher.groups):
        return None  # every group universal (``^`` is the empty name too, PS3.5 6.2.1.1)
    return matcher


# ------------------------------------------------------------------ combination
@dataclass(frozen=True)
class AnyOf(Matcher):
    """A key of several values (``a\\b``): any value may match (as list of UID
    matching, PS3.4 C.2.2.2.2, does for UIDs; QIDO-RS lists, PS3.18 8.3.4.1)."""

    matchers: tuple[Matcher, ...]

    @property
    def indexable(self) -> bool:  # type: ignore[override]
        return all(m.indexable for m in self.matchers)

    def sql(self, column: Any, norm: Any = None) -> Condition:
        return sa.or_(*[m.sql(column, norm) for m in self.matchers])

    def match(self, values: Sequence[Any]) -> bool:
        return any(m.match(values) for m in self.matchers)


@dataclass(frozen=True)
class SequenceMatch(Matcher):
    """Sequence matching (PS3.4 C.2.2.2.6): a sequence key holding one item of keys
    matches an entity when at least one item of its stored sequence satisfies every
    key of that item (each key by its own rule; universal item keys only ask for the
    attribute).  Sequences are never index columns, so this rule runs over stored JSON
    only (`indexable` is False)."""

    items: tuple[tuple[str, Matcher], ...]  # (tag as 8 hex digits, matcher of that key)
    indexable = False

    def sql(self, column: Any, norm: Any = None) -> Condition:
        raise TypeError("sequence keys are matched over stored values only")

    def match(self, values: Sequence[Any]) -> bool:
        for item in values:
            if not isinstance(item, dict):
                continue
            if all(m.match((item.get(tag) or {}).get("Value", [])) for tag, m in self.items):
                return True
        return False


def sequence_matcher(
    keyword: str, item_keys: dict[int, str], fuzzy: bool = False
) -> SequenceMatch | None:
    """The matcher of a sequence key whose one item holds `item_keys` (tag → value),
    or None when every item key is universal (then the key only returns the items)."""
    from pydicom.datadict import dictionary_VR, keyword_for_tag

    items = []
    for tag, value in item_keys.items():
        try:
            vr = str(dictionary_VR(tag))
        except KeyError:
            vr = "UN"
        name = f"{keyword}.{keyword_for_tag(tag) or f'{tag:08X}'}"
        m = matcher_for(name, vr, value, fuzzy)
        if m is not None:
            items.append((f"{tag:08X}", m))
    return SequenceMatch(tuple(items)) if items else None


def matcher_for(keyword: str, vr: str, value: str | None, fuzzy: bool = False) -> Matcher | None:
    """The matcher of one key, or None for universal matching (PS3.4 C.2.2.2.3: an
    empty value, or ``*``, matches every entity and only asks for the attribute).

    `keyword` names the key in error messages; `vr` picks the rule; `fuzzy` turns on
    `FuzzyName` for person names.  Raises QueryError for a value the rule refuses.
    Sequence keys (SQ) are universal here: their items are returned, not matched."""
    if value is None or value in ("", "*") or vr == "SQ":
        return None
    if vr == "UI":
        return uid_matcher(keyword, value)
    if vr in BINARY_VRS:
        raise QueryError(f"{keyword}: matching on {vr} values is not supported")
    values = [v for v in value.split("\\") if v]  # empty list items add nothing
    if len(values) > MAX_KEY_VALUES:
        # each value is one SQL term: SQLite refuses an expression deeper than 1000
        raise QueryError(f"{keyword}: more than {MAX_KEY_VALUES} values to match")
    matchers: list[Matcher] = []
    for one in values:
        m = _one(keyword, vr, one, fuzzy)
        if m is None:
            return None  # a universal value (``*``) makes the whole key universal
        matchers.append(m)
    if not matchers:
        return None
    return matchers[0] if len(matchers) == 1 else AnyOf(tuple(matchers))


def _one(keyword: str, vr: str, value: str, fuzzy: bool) -> Matcher | None:
    if value in ("", "*"):
        return None
    if vr in NO_WILDCARD_VRS and has_wildcard(value):
        raise QueryError(f"{keyword}: wildcards are not allowed for {vr} values")
    if vr == "DA":
        return date_matcher(keyword, value)
    if vr == "TM":
        return time_matcher(keyword, value)
    if vr == "DT":
        return datetime_matcher(keyword, value)
    if vr in INT_VRS or vr in FLOAT_VRS:
        return number_matcher(keyword, vr, value)
    if vr == "PN":
        return person_name_matcher(keyword, value, fuzzy)
    return text_matcher(value)


__all__ = [
    "AnyOf",
    "Between",
    "DateTimeRange",
    "Exact",
    "FuzzyName",
    "Matcher",
    "Number",
    "PersonName",
    "QueryError",
    "SequenceMatch",
    "UidList",
    "Wildcard",
    "matcher_for",
    "sequence_matcher",
]
