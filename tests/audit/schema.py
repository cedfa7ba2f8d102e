"""The DICOM Audit Message Schema of PS3.15 A.5.1.1 (audit-message.rnc, the standard's
RELAX NG Compact text), converted with rnc2rng and checked with lxml."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import rnc2rng
from lxml import etree

RNC = Path(__file__).with_name("audit-message.rnc")


@cache
def schema() -> etree.RelaxNG:
    with RNC.open(encoding="utf-8") as fh:
        rng = rnc2rng.dumps(rnc2rng.load(fh))
    return etree.RelaxNG(etree.fromstring(rng.encode("utf-8")))


def check(xml: str) -> etree._Element:
    """Parse an audit message and fail with the validator's words unless it is valid."""
    document = etree.fromstring(xml.encode("utf-8"))
    validator = schema()
    assert validator.validate(document), f"{validator.error_log}\n{xml}"
    return document


def code(element: etree._Element, path: str) -> tuple[str, str, str]:
    found = element.find(path)
    assert found is not None, path
    return (found.get("csd-code"), found.get("codeSystemName"), found.get("originalText"))
