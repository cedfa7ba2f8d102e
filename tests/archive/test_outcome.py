"""One table: every store outcome, its C-STORE status (PS3.4 B.2.3) and its STOW-RS
Failure Reason (PS3.18 Table I.2-2); every store warning, its C-STORE warning status and
STOW-RS Warning Reason (PS3.18 Table I.2-1); and the HTTP status of a STOW-RS response."""

from __future__ import annotations

import pytest

from isthmus.archive import StoreOutcome, StoreResult, StoreWarning, stow_http_status

SO = StoreOutcome
SW = StoreWarning

# outcome: (ok, C-STORE status, STOW-RS Failure Reason)
TABLE = {
    SO.STORED: (True, 0x0000, None),
    SO.DUPLICATE: (True, 0x0000, None),
    SO.OVERWRITTEN: (True, 0x0000, None),
    SO.INVALID: (False, 0xC000, 0xC000),
    SO.UNKNOWN_TRANSFER_SYNTAX: (False, 0xC000, 0xC122),
    SO.DATASET_MISMATCH: (False, 0xA900, 0xA900),
    SO.SERIES_IN_OTHER_STUDY: (False, 0x0110, 0x0110),
    SO.STUDY_MISMATCH: (False, 0x0110, 0xC409),
    SO.OUT_OF_RESOURCES: (False, 0xA700, 0xA700),
    SO.PROCESSING_FAILURE: (False, 0x0110, 0x0110),
}


def test_the_table_names_every_outcome() -> None:
    assert set(TABLE) == set(StoreOutcome)


@pytest.mark.parametrize("outcome", list(StoreOutcome), ids=str)
def test_each_outcome_has_one_dimse_status_and_one_stow_failure_reason(
    outcome: StoreOutcome,
) -> None:
    assert (outcome.ok, outcome.dimse_status, outcome.failure_reason) == TABLE[outcome]


def test_the_result_speaks_the_outcome() -> None:
    assert StoreResult(SO.OVERWRITTEN).status == "stored"
    assert StoreResult(SO.DUPLICATE).status == "duplicate"
    failed = StoreResult(SO.OUT_OF_RESOURCES)
    assert (failed.ok, failed.status, failed.failure) == (False, "failed", "resources")
    assert StoreResult(SO.STORED).failure is None


# warning: its C-STORE status, also its STOW-RS Warning Reason (0008,1196)
WARNINGS = {SW.ELEMENTS_DISCARDED: 0xB006}


def test_each_warning_has_its_c_store_warning_status() -> None:
    assert {warning: warning.dimse_status for warning in StoreWarning} == WARNINGS


def test_a_stored_result_with_a_warning_answers_the_warnings_status() -> None:
    """PS3.4 B.2.3: stored, with a warning status; a failure stays a failure."""
    warned = StoreResult(SO.OVERWRITTEN, warning=SW.ELEMENTS_DISCARDED)
    assert (warned.ok, warned.status, warned.dimse_status) == (True, "stored", 0xB006)
    assert StoreResult(SO.STORED).dimse_status == 0x0000
    assert StoreResult(SO.INVALID, warning=SW.ELEMENTS_DISCARDED).dimse_status == 0xC000


@pytest.mark.parametrize(
    "results, status",
    [
        ([(SO.STORED, None), (SO.DUPLICATE, None), (SO.OVERWRITTEN, None)], 200),
        ([(SO.STORED, None), (SO.INVALID, None)], 202),
        ([(SO.STORED, None), (SO.STORED, SW.ELEMENTS_DISCARDED)], 202),
        ([(SO.STORED, SW.ELEMENTS_DISCARDED)], 202),
        ([(SO.STUDY_MISMATCH, None), (SO.OUT_OF_RESOURCES, None)], 409),
    ],
    ids=["all-stored", "some-failed", "some-warned", "all-warned", "none-stored"],
)
def test_stow_http_status(
    results: list[tuple[StoreOutcome, StoreWarning | None]], status: int
) -> None:
    """PS3.18 10.5.3.1: 200 only when all were stored without a warning; 202 when some
    were stored and warnings or failures exist; 409 when none was."""
    assert stow_http_status(results) == status
