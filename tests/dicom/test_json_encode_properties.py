"""Property: over generated DICOM JSON, the direct encoder writes pydicom's bytes.

Data sets of any VR the encoder takes, with several, empty and null values, person
names with any of their three groups, text outside ASCII, sequences nested three deep;
each in Implicit and Explicit VR Little Endian and Explicit VR Big Endian.

Budget: the Hypothesis profile (tests/conftest.py); `make fuzz` runs many more examples.
"""

from __future__ import annotations

import base64
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from tests.dicom.test_json_encode import SYNTAXES, pydicom_encoding, with_charset

from isthmus.dicom.json_encode import JsonEncoder

LATIN1 = st.text(st.characters(max_codepoint=0xFF), max_size=12)
ANY_TEXT = st.text(max_size=12)
DIGITS = st.text("0123456789.", min_size=1, max_size=12)
RANGES = {
    "US": (0, 2**16 - 1),
    "SS": (-(2**15), 2**15 - 1),
    "UL": (0, 2**32 - 1),
    "SL": (-(2**31), 2**31 - 1),
    "UV": (0, 2**64 - 1),
    "SV": (-(2**63), 2**63 - 1),
}


def strings(text: st.SearchStrategy[str]) -> st.SearchStrategy[Any]:
    return st.one_of(text, st.none())


PERSON_NAME = st.one_of(
    st.none(),
    st.fixed_dictionaries(
        {},
        optional={
            "Alphabetic": st.text("ABCab^= \\", max_size=10),
            "Ideographic": ANY_TEXT,
            "Phonetic": ANY_TEXT,
        },
    ),
)


def single(value: st.SearchStrategy[Any]) -> st.SearchStrategy[list[Any]]:
    """One value, or null (an empty value, PS3.18 F.2.5)."""
    return st.one_of(st.lists(value, min_size=1, max_size=1), st.just([None]))


VALUES: dict[str, st.SearchStrategy[list[Any]]] = {
    **{vr: st.lists(strings(LATIN1), max_size=3) for vr in ("AE", "AS", "CS", "DA", "DT", "TM")},
    "UR": st.lists(strings(LATIN1), max_size=2),
    **{vr: st.lists(strings(ANY_TEXT), max_size=3) for vr in ("LO", "LT", "SH", "ST", "UC", "UT")},
    "UI": st.lists(strings(st.text("0123456789. \\\t", max_size=16)), max_size=3),
    "PN": st.lists(PERSON_NAME, max_size=3),
    "IS": st.one_of(
        st.lists(st.integers(-(2**31), 2**31 - 1), max_size=4),
        single(st.floats(-1e9, 1e9)),
        single(st.from_regex(r"\A ?-?[0-9]{1,9} ?\Z")),
    ),
    "DS": st.one_of(
        st.lists(st.floats(), max_size=4),
        st.lists(st.integers(-(10**12), 10**12), max_size=2),
        single(DIGITS.filter(lambda s: s.count(".") <= 1 and s != ".")),
    ),
    **{
        vr: st.one_of(st.lists(st.integers(*bounds), max_size=4), st.just([None]))
        for vr, bounds in RANGES.items()
    },
    "FL": st.lists(st.floats(width=32), max_size=4),
    "FD": st.lists(st.floats(), max_size=4),
    "AT": st.lists(st.integers(0, 2**32 - 1).map("{:08X}".format), max_size=3),
}
BYTES_VRS = ("OB", "OD", "OF", "OL", "OV", "OW")
# Tags away from the ones the encoder hands to pydicom (group lengths, Specific
# Character Set, LUT descriptors): (0009,xx10..FF) and (0011,xx10..FF).
TAGS = st.builds(
    lambda group, element: f"{group:04X}{element:04X}",
    st.sampled_from([0x0009, 0x0011]),
    st.integers(0x1010, 0x10FF),
)


def attribute(vr: str) -> st.SearchStrategy[dict[str, Any]]:
    if vr in BYTES_VRS:
        value = st.binary(max_size=9).map(lambda raw: base64.b64encode(raw).decode())
        return st.one_of(
            st.just({"vr": vr}), value.map(lambda text: {"vr": vr, "InlineBinary": text})
        )
    return st.one_of(
        st.just({"vr": vr}), VALUES[vr].map(lambda values: {"vr": vr, "Value": values})
    )


def datasets(depth: int) -> st.SearchStrategy[dict[str, Any]]:
    plain = st.sampled_from([*VALUES, *BYTES_VRS]).flatmap(attribute)
    if depth:
        items = st.lists(st.one_of(st.none(), datasets(depth - 1)), max_size=3)
        plain = st.one_of(plain, items.map(lambda values: {"vr": "SQ", "Value": values}))
    return st.dictionaries(TAGS, plain, max_size=6)


@given(datasets(3))
def test_the_encoder_writes_what_pydicom_writes(dataset: dict[str, Any]) -> None:
    dataset = with_charset(dataset)
    for implicit, little in SYNTAXES:
        encoded = JsonEncoder(implicit, little).dataset(dataset)
        assert encoded == pydicom_encoding(dataset, implicit, little)
