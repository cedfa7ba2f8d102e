"""The Native DICOM Model in XML (PS3.19 A.1), converted from and to the DICOM JSON model.

DICOMweb answers `application/dicom+xml` with one `<NativeDicomModel>` document per
dataset (PS3.18 F.3 maps the JSON model onto it): each attribute is a
`<DicomAttribute tag vr keyword>` holding `<Value number>`, `<PersonName number>`,
`<Item number>`, `<BulkData uri>` or `<InlineBinary>` children.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

from pydicom.datadict import keyword_for_tag

from isthmus.audit.message import NOT_XML_CHAR

NAMESPACE = "http://dicom.nema.org/PS3.19/models/NativeDICOM"
_PN_GROUPS = ("Alphabetic", "Ideographic", "Phonetic")
_PN_COMPONENTS = ("FamilyName", "GivenName", "MiddleName", "NamePrefix", "NameSuffix")


def to_xml(dataset: dict[str, Any]) -> bytes:
    """One DICOM JSON dataset as a PS3.19 XML document (UTF-8, with declaration)."""
    root = ET.Element("NativeDicomModel", {"xmlns": NAMESPACE, "xml:space": "preserve"})
    _fill(root, dataset)
    # ElementTree writes a CR in text as it is, which a parser reads as LF (XML 1.0
    # 2.11): LT, ST and UT lines end in CR LF (PS3.5 6.1.3).  Only text holds one.
    text = ET.tostring(root, encoding="unicode").replace("\r", "&#13;")
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + text.encode("utf-8")


def _fill(parent: ET.Element, dataset: dict[str, Any]) -> None:
    for key in sorted(dataset):
        element = dataset[key]
        tag = int(key, 16)
        attrs = {"tag": key.upper(), "vr": element.get("vr", "UN")}
        keyword = keyword_for_tag(tag)
        if keyword:
            attrs["keyword"] = keyword
        node = ET.SubElement(parent, "DicomAttribute", attrs)
        _values(node, attrs["vr"], element)


def _values(node: ET.Element, vr: str, element: dict[str, Any]) -> None:
    if "BulkDataURI" in element:
        ET.SubElement(node, "BulkData", {"uri": element["BulkDataURI"]})
        return
    if "InlineBinary" in element:
        ET.SubElement(node, "InlineBinary").text = element["InlineBinary"]
        return
    for number, value in enumerate(element.get("Value", []), start=1):
        if vr == "SQ":
            item = ET.SubElement(node, "Item", {"number": str(number)})
            _fill(item, value or {})
        elif vr == "PN":
            _person_name(node, number, value)
        else:
            child = ET.SubElement(node, "Value", {"number": str(number)})
            if value is not None:
                child.text = _text(value)


def _text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return repr(value)
    return _xml_chars(str(value))


def _xml_chars(text: str) -> str:
    """`text` with each character XML 1.0 cannot hold as U+FFFD, as audit messages
    have it.  A value may have one: FORM FEED and ESC are allowed in text VRs (PS3.5
    6.1.3), and an escape sequence of a character set the data set does not declare
    stays in the decoded value; one left in made the whole document ill-formed.  The
    instance and its DICOM JSON keep the character."""
    return NOT_XML_CHAR.sub("\ufffd", text)


def _person_name(node: ET.Element, number: int, value: Any) -> None:
    pn = ET.SubElement(node, "PersonName", {"number": str(number)})
    if not isinstance(value, dict):
        return
    for group in _PN_GROUPS:
        text = value.get(group)
        if text is None:
            continue
        group_node = ET.SubElement(pn, group)
        for name, part in zip(_PN_COMPONENTS, str(text).split("^"), strict=False):
            if part:
                ET.SubElement(group_node, name).text = _xml_chars(part)


# ----------------------------------------------------------------- XML → JSON
def from_xml(data: bytes) -> dict[str, Any]:
    """A PS3.19 XML document as a DICOM JSON dataset (for STOW-RS XML metadata).

    Raises ValueError on anything that is not a Native DICOM Model document.
    """
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        raise ValueError(f"not well-formed XML: {exc}") from None
    if _local(root.tag) != "NativeDicomModel":
        raise ValueError("the XML root element is not NativeDicomModel")
    return _read(root)


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _read(parent: ET.Element) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for node in parent:
        if _local(node.tag) != "DicomAttribute":
            continue
        key = node.get("tag", "").upper()
        if len(key) != 8:
            raise ValueError(f"DicomAttribute without a valid tag: {key!r}")
        vr = node.get("vr") or "UN"
        out[key] = _element(node, vr)
    return out


def _element(node: ET.Element, vr: str) -> dict[str, Any]:
    element: dict[str, Any] = {"vr": vr}
    values: list[Any] = []
    for child in node:
        name = _local(child.tag)
        if name == "BulkData":
            element["BulkDataURI"] = child.get("uri") or child.get("uuid", "")
            return element
        if name == "InlineBinary":
            element["InlineBinary"] = (child.text or "").strip()
            return element
        if name == "Item":
            values.append(_read(child))
        elif name == "PersonName":
            values.append(_read_person_name(child))
        elif name == "Value":
            values.append(_typed(vr, child.text))
    if values or vr == "SQ":
        element["Value"] = values
    return element


def _read_person_name(node: ET.Element) -> dict[str, str]:
    out: dict[str, str] = {}
    for group in node:
        parts = {(_local(c.tag)): (c.text or "") for c in group}
        components = [parts.get(name, "") for name in _PN_COMPONENTS]
        while components and not components[-1]:
            components.pop()
        out[_local(group.tag)] = "^".join(components)
    return out


def _typed(vr: str, text: str | None) -> Any:
    if text is None:
        return None
    if vr in ("IS", "SL", "SS", "UL", "US", "SV", "UV"):
        return int(text)
    if vr in ("DS", "FL", "FD"):
        number = float(text)
        return int(number) if vr == "DS" and number.is_integer() and "." not in text else number
    return text
