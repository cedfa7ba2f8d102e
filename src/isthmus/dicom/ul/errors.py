"""What goes wrong in the upper layer, with the A-ABORT reason that answers it (PS3.8 9.3.8)."""

from __future__ import annotations

# A-ABORT reasons when the source is the service provider (PS3.8 table 9-26)
NOT_SPECIFIED = 0
UNRECOGNIZED_PDU = 1
UNEXPECTED_PDU = 2
UNRECOGNIZED_PARAMETER = 4
UNEXPECTED_PARAMETER = 5
INVALID_PARAMETER = 6


class PDUError(ValueError):
    """Bytes that are not the PDU they claim to be, or a PDU PS3.8 does not allow here;
    `reason` is the A-ABORT reason to send (PS3.8 table 9-26)."""

    def __init__(self, message: str, reason: int = INVALID_PARAMETER) -> None:
        super().__init__(message)
        self.reason = reason
