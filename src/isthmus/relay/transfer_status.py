"""DICOM statuses of a transfer: of each C-STORE to the destination, and the final one.

A C-STORE's status (PS3.4 B.2.3, PS3.7 Annex C) is a success (0x0000), a warning
(0xB000 coercion, 0xB006 elements discarded, 0xB007 data set does not match the SOP
class; 0x0001, 0x0107, 0x0116 the general warnings of PS3.7 C.4) or a failure
(anything else).  The final status of the C-MOVE or C-GET the transfer serves follows
PS3.4 C.4.2.1.5 / C.4.3.1.3: Cancel when cancelled, the source's own failure when it
reported one, 0xA702 when every sub-operation failed, 0xB000 when some failed or
warned, success only when every instance arrived, verified, and was stored.
"""

from __future__ import annotations

from isthmus.archive.relay_transfers import DELIVERED, FAILED, WARNING

SUCCESS = 0x0000
CANCEL = 0xFE00
PENDING = 0xFF00
SUBOPERATIONS_WARNING = 0xB000  # Sub-operations complete - one or more failures/warnings
UNABLE_TO_PERFORM_SUBOPERATIONS = 0xA702  # Refused: out of resources
PROCESSING_FAILURE = 0x0110
_GENERAL_WARNINGS = frozenset({0x0001, 0x0107, 0x0116})


def store_outcome(status: int) -> str:
    """DELIVERED, WARNING or FAILED for the status of one C-STORE."""
    if status == SUCCESS:
        return DELIVERED
    if status in _GENERAL_WARNINGS or 0xB000 <= status <= 0xBFFF:
        return WARNING
    return FAILED


def is_failure(status: int) -> bool:
    """A final C-MOVE/C-GET status that is neither success, warning, pending nor cancel."""
    return status not in (SUCCESS, SUBOPERATIONS_WARNING, CANCEL, PENDING, 0xFF01)


def final_status(completed: int, failed: int, warning: int, *, source_status: int = SUCCESS) -> int:
    """The honest final status of the retrieve a transfer served (module docstring)."""
    if source_status == CANCEL:
        return CANCEL
    if is_failure(source_status):
        return source_status
    if failed and not completed and not warning:
        return UNABLE_TO_PERFORM_SUBOPERATIONS
    if failed or warning:
        return SUBOPERATIONS_WARNING
    return SUCCESS
