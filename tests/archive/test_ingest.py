"""From a parsed header to index values: person names, numbers, multi-valued text."""

from __future__ import annotations

from isthmus.archive.ingest import column_value, normalize_pn


def test_person_name_is_normalized_to_its_upper_case_alphabetic_group() -> None:
    assert normalize_pn("Smith^Anna") == "SMITH^ANNA"
    assert normalize_pn("Yamada^Tarou=山田^太郎=やまだ^たろう") == "YAMADA^TAROU"


def test_column_values_from_dicom_json() -> None:
    model = {
        "00100010": {
            "vr": "PN",
            "Value": [{"Alphabetic": "Yamada^Tarou", "Ideographic": "山田^太郎"}],
        },
        "00200011": {"vr": "IS", "Value": [7]},
        "00080061": {"vr": "CS", "Value": ["CT", "MR"]},
        "00081030": {"vr": "LO", "Value": ["x" * 300]},
        "00200013": {"vr": "IS", "Value": ["not a number"]},
        "00080050": {"vr": "SH"},
    }
    assert column_value(model, "00100010", "PN") == "Yamada^Tarou=山田^太郎"
    assert column_value(model, "00200011", "IS") == 7
    assert column_value(model, "00080061", "CS") == "CT\\MR"
    assert len(column_value(model, "00081030", "LO")) == 256
    assert column_value(model, "00200013", "IS") is None
    assert column_value(model, "00080050", "SH") is None
    assert column_value(model, "00080090", "PN") is None
