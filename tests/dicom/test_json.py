"""isthmus.dicom.json.dumps_bytes: the text `dumps` writes, as UTF-8, whatever the values."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from isthmus.dicom.json import dumps, dumps_bytes

# DICOM JSON values (PS3.18 F.2.3): strings, numbers, person names, nested items.
_scalar = st.one_of(
    st.text(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.none(),
)
_element = st.fixed_dictionaries(
    {"vr": st.sampled_from(["PN", "DS", "IS", "LO", "SQ", "UI"])},
    optional={"Value": st.lists(_scalar | st.dictionaries(st.text(), st.text()), max_size=4)},
)
_dataset = st.dictionaries(st.from_regex(r"[0-9A-F]{8}", fullmatch=True), _element, max_size=6)


@given(st.lists(_dataset, max_size=4))
def test_the_bytes_parse_to_what_dumps_wrote(datasets: list[dict]) -> None:  # type: ignore[type-arg]
    assert json.loads(dumps_bytes(datasets)) == json.loads(dumps(datasets))


def test_names_in_any_script_are_kept_as_utf8_characters() -> None:
    name = {
        "00100010": {
            "vr": "PN",
            "Value": [{"Alphabetic": "Yamada^Tarou", "Ideographic": "山田^太郎"}],
        }
    }
    assert dumps_bytes([name]) == dumps([name]).encode("utf-8")
    assert "山田".encode() in dumps_bytes([name])


def test_an_integer_beyond_64_bits_goes_through_the_standard_encoder() -> None:
    big = {"00280010": {"vr": "IS", "Value": [2**70]}}
    assert dumps_bytes([big]) == dumps([big]).encode("utf-8")


def test_a_lone_surrogate_is_refused_clearly() -> None:
    broken = {"00100010": {"vr": "PN", "Value": [{"Alphabetic": "\ud800"}]}}
    with pytest.raises(UnicodeEncodeError):
        dumps_bytes([broken])
