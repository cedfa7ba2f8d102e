"""PS3.15 Table E.1-1 as data: which action each attribute gets, per option.

The table is `table_e1_1.csv` beside this module, written by
`scripts/make_deid_table.py` from the standard's own table (its first lines name the
edition and source).  Actions (PS3.15 E.1-1, legend): D dummy value, Z zero length,
X remove, K keep, C clean, U new UID, and the combined Z/D, X/Z, X/D, X/Z/D, X/Z/U*
whose choice depends on the attribute's type in the IOD (profile.py resolves them).
Rows whose tag has repeating digits ((50xx,xxxx) curves, (60xx,3000) overlays) and
the one for private attributes ((GGGG,EEEE), "where GGGG is odd") are kept apart.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

TABLE = Path(__file__).with_name("table_e1_1.csv")
OPTION_COLUMNS = (
    "retain_safe_private",
    "retain_uids",
    "retain_device_identity",
    "retain_institution_identity",
    "retain_patient_characteristics",
    "retain_full_dates",
    "retain_modified_dates",
    "clean_descriptors",
    "clean_structured_content",
    "clean_graphics",
)
ACTIONS = frozenset({"D", "Z", "X", "K", "C", "U", "Z/D", "X/Z", "X/D", "X/Z/D", "X/Z/U*"})
PRIVATE = "(GGGG,EEEE)"


@dataclass(frozen=True)
class Row:
    """One attribute of Table E.1-1: its tag pattern, name and actions per column."""

    tag: str  # "(0010,0010)", "(50xx,xxxx)", or PRIVATE
    name: str
    basic: str
    options: dict[str, str]

    def action(self, columns: Iterable[str]) -> str:
        """The action under the chosen option columns: an option's entry overrides the
        Basic Profile's (E.3); where two chosen options both have one, K (retain) wins."""
        chosen = [self.options[c] for c in columns if self.options.get(c)]
        if not chosen:
            return self.basic
        return "K" if "K" in chosen else chosen[0]

    @property
    def mask(self) -> tuple[int, int]:
        """(mask, value): a tag t matches when t & mask == value."""
        digits = self.tag.strip("()").replace(",", "")
        mask = int("".join("0" if c == "x" else "F" for c in digits), 16)
        value = int(digits.replace("x", "0"), 16)
        return mask, value


@cache
def rows() -> tuple[Row, ...]:
    """Every row of the table, in tag order."""
    with TABLE.open(encoding="utf-8", newline="") as f:
        lines = [line for line in f if not line.startswith("#")]
    out = []
    for record in csv.DictReader(lines):
        options = {c: record[c] for c in OPTION_COLUMNS if record[c]}
        for action in (record["basic"], *options.values()):
            if action not in ACTIONS:
                raise ValueError(f"{TABLE.name}: unknown action {action!r} for {record['tag']}")
        out.append(Row(record["tag"], record["name"], record["basic"], options))
    return tuple(out)


@dataclass(frozen=True)
class Actions:
    """The table resolved for one set of options: tag → action."""

    exact: dict[int, str]
    repeating: tuple[tuple[int, int, str], ...]  # (mask, value, action)
    private: str

    def for_tag(self, tag: int) -> str | None:
        """The action for a standard tag, None when the table does not list it."""
        action = self.exact.get(tag)
        if action is not None:
            return action
        for mask, value, repeating in self.repeating:
            if tag & mask == value:
                return repeating
        return None


@cache
def actions(columns: tuple[str, ...]) -> Actions:
    """The table under the chosen option columns (DeidentificationOptions.columns)."""
    exact: dict[int, str] = {}
    repeating: list[tuple[int, int, str]] = []
    private = "X"
    for row in rows():
        action = row.action(columns)
        if row.tag == PRIVATE:
            private = action
        elif "x" in row.tag:
            repeating.append((*row.mask, action))
        else:
            exact[row.mask[1]] = action
    return Actions(exact, tuple(repeating), private)
