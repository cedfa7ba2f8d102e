"""The DIMSE status table (PS3.7 Annex C, PS3.4): names, classes, meanings per service."""

from __future__ import annotations

from isthmus.dicom import status
from isthmus.dicom.status import Category


def test_statuses_are_ints_with_a_name_and_a_meaning() -> None:
    assert status.NOT_AUTHORIZED == 0x0124
    assert status.NOT_AUTHORIZED.name == "NOT_AUTHORIZED"
    assert "not authorized" in status.NOT_AUTHORIZED.meaning
    assert f"0x{status.MOVE_DESTINATION_UNKNOWN:04X}" == "0xA801"
    assert {status.SUCCESS: "ok"}[0] == "ok"  # usable wherever the code is


def test_classes_follow_the_code() -> None:
    assert status.category(0x0000) is Category.SUCCESS
    assert status.category(0xFF01) is Category.PENDING
    assert status.category(0xFE00) is Category.CANCEL
    for code in (0x0001, 0x0107, 0x0116, 0xB000, 0xB007):
        assert status.is_warning(code) and status.category(code) is Category.WARNING
    for code in (0xA700, 0xA702, 0xA900, 0xC000, 0xC123, 0x0110, 0x0124, 0x0211):
        assert status.is_failure(code)
    assert status.SUB_OPERATIONS_WITH_FAILURES.category is Category.WARNING


def test_one_code_means_what_its_service_says() -> None:
    assert status.meaning(0xC000, "C-STORE") == "Error: cannot understand"
    assert status.meaning(0xC000, "C-FIND") == "Failed: unable to process"
    assert status.meaning(0xC123, "C-STORE") == "Error: cannot understand"  # Cxxx range
    assert status.meaning(0xA7FF, "C-STORE") == "Refused: out of resources"
    assert status.meaning(0xB000, "C-MOVE").startswith("Warning: sub-operations complete")
    assert status.meaning(0xB000, "C-STORE") == "Warning: coercion of data elements"
    assert status.lookup(0x0124, "C-GET") is status.NOT_AUTHORIZED  # general codes hold
    assert status.meaning(0xD123) == "failure (0xD123)"
