"""The tags panel's keyword table (js/dictionary.js) agrees with pydicom's data dictionary."""

from __future__ import annotations

import json
import re

from pydicom.datadict import keyword_for_tag

from .make_dictionary import TARGET, entries


def table() -> dict[str, str]:
    text = TARGET.read_text(encoding="utf-8")
    body = json.loads(re.search(r"const TABLE =\s*(\".*\");", text).group(1))
    return {line[:8]: line[8:] for line in body.split("\n")}


def test_every_keyword_matches_pydicom() -> None:
    shipped = table()
    assert shipped["00100010"] == "PatientName" and shipped["7FE00010"] == "PixelData"
    wrong = {tag: kw for tag, kw in shipped.items() if keyword_for_tag(int(tag, 16)) != kw}
    assert not wrong, f"regenerate with tests/viewer/make_dictionary.py: {list(wrong.items())[:5]}"


def test_table_is_complete() -> None:
    missing = set(entries()) - set(table())
    assert not missing, f"regenerate with tests/viewer/make_dictionary.py: {sorted(missing)[:5]}"
