"""DICOM statuses of a transfer: of each C-STORE to the destination, and the final one.

A C-STORE's status (PS3.4 B.2.3, PS3.7 Annex C) is a success (0x0000), a warning
(`isthmus.dicom.status.is_warning`: 0xB000 coercion, 0xB006, 0xB007, and the general
0x0001, 0x0107, 0x0116) or a failure (anything else).  The final status of the C-MOVE
or C-GET the transfer serves follows PS3.4 C.4.2.1.5 / C.4.3.1.3: Cancel when
cancelled, the source's own failure when it reported one, 0xA702 when every
sub-operation failed, 0xB000 when some failed or warned, success only when every
instance arrived, verified, and was stored.
"""

from __future__ import annotations

from isthmus.archive import RelayTransfers
from isthmus.dicom import status
from isthmus.dicom.status import Category

DELIVERED, WARNING, FAILED = RelayTransfers.DELIVERED, RelayTransfers.WARNING, RelayTransfers.FAILED
SUCCESS = status.SUCCESS
CANCEL = status.CANCEL
PROCESSING_FAILURE = status.PROCESSING_FAILURE
SUBOPERATIONS_WARNING = status.SUB_OPERATIONS_WITH_FAILURES  # 0xB000
UNABLE_TO_PERFORM_SUBOPERATIONS = status.OUT_OF_RESOURCES_SUB_OPERATIONS  # 0xA702


def store_outcome(code: int) -> str:
    """DELIVERED, WARNING or FAILED for the status of one C-STORE."""
    if code == SUCCESS:
        return DELIVERED
    return WARNING if status.is_warning(code) else FAILED


def final_status(completed: int, failed: int, warning: int, *, source_status: int = SUCCESS) -> int:
    """The honest final status of the retrieve a transfer served (module docstring)."""
    if source_status == CANCEL:
        return int(CANCEL)
    if status.category(source_status) is Category.FAILURE:
        return source_status
    if failed and not completed and not warning:
        return int(UNABLE_TO_PERFORM_SUBOPERATIONS)
    if failed or warning:
        return int(SUBOPERATIONS_WARNING)
    return int(SUCCESS)
