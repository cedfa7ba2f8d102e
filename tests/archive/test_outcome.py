"""One table: every store outcome, its C-STORE status (PS3.4 B.2.3) and its STOW-RS
Failure Reason (PS3.18 Table I.2-2); and the HTTP status of a STOW-RS response."""

from __future__ import annotations

import pytest

from isthmus.archive import StoreOutcome, StoreResult, stow_http_status

SO = StoreOutcome

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


@pytest.mark.parametrize(
    "outcomes, status",
    [
        ([SO.STORED, SO.DUPLICATE, SO.OVERWRITTEN], 200),
        ([SO.STORED, SO.INVALID], 202),
        ([SO.STUDY_MISMATCH, SO.OUT_OF_RESOURCES], 409),
    ],
)
def test_stow_http_status(outcomes: list[StoreOutcome], status: int) -> None:
    assert stow_http_status(outcomes) == status
