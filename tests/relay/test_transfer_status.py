"""The statuses of a transfer (relay/transfer_status.py): never success when an instance
was lost (PS3.4 C.4.2.1.5)."""

from __future__ import annotations

import pytest

from isthmus.relay.transfer_status import final_status, store_outcome


@pytest.mark.parametrize(
    ("code", "outcome"),
    [
        (0x0000, "delivered"),
        (0xB000, "warning"),
        (0xB007, "warning"),
        (0x0001, "warning"),
        (0xA700, "failed"),
        (0xC000, "failed"),
        (0x0110, "failed"),
    ],
)
def test_a_store_status_is_a_delivery_a_warning_or_a_failure(code: int, outcome: str) -> None:
    assert store_outcome(code) == outcome


@pytest.mark.parametrize(
    ("counts", "source", "final"),
    [
        ((30, 0, 0), 0x0000, 0x0000),  # everything arrived and was stored
        ((29, 1, 0), 0x0000, 0xB000),  # one lost: never success
        ((29, 0, 1), 0x0000, 0xB000),  # one warning
        ((0, 3, 0), 0x0000, 0xA702),  # every sub-operation failed
        ((30, 0, 0), 0xB000, 0x0000),  # the source's warning was about the relay's stores
        ((2, 0, 0), 0xFE00, 0xFE00),  # cancelled
        ((2, 0, 0), 0xC000, 0xC000),  # the source failed: its own status
        ((0, 0, 0), 0x0000, 0x0000),  # nothing to move
    ],
)
def test_the_final_status_is_honest(counts, source: int, final: int) -> None:
    completed, failed, warning = counts
    assert final_status(completed, failed, warning, source_status=source) == final
