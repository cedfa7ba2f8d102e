"""Is an instance durably stored and intact?  The answer `Archive.verify` gives.

Storage Commitment (PS3.4 Annex J) promises that the SCP keeps what it confirms;
each answer has exactly one Failure Reason (0008,1197) for the Failed SOP Sequence
(PS3.4 J.3.2.1.3.1, values of PS3.4 Table J.3-2 / PS3.7 C.5), looked up here so a
door never picks one itself.
"""

from __future__ import annotations

from enum import StrEnum


class Integrity(StrEnum):
    INTACT = "intact"
    NO_SUCH_INSTANCE = "no-such-instance"  # not in the index (never stored, or deleted)
    CLASS_INSTANCE_CONFLICT = "class-instance-conflict"  # stored with another SOP class
    DAMAGED = "damaged"  # indexed, but the blob is missing or not of its recorded size

    @property
    def failure_reason(self) -> int | None:
        """Failure Reason (0008,1197) of a Failed SOP Sequence item; None when intact."""
        return _FAILURE_REASONS[self]


_FAILURE_REASONS: dict[Integrity, int | None] = {
    Integrity.INTACT: None,
    Integrity.NO_SUCH_INSTANCE: 0x0112,  # No such object instance
    Integrity.CLASS_INSTANCE_CONFLICT: 0x0119,  # Class-instance conflict
    Integrity.DAMAGED: 0x0110,  # Processing failure
}
