"""What became of one store, in one vocabulary for every door.

`Archive.store` answers a `StoreResult` whose `outcome` is a `StoreOutcome`.  Each
outcome has exactly one C-STORE status (PS3.4 B.2.3) and one STOW-RS Failure Reason
(0008,1197; PS3.18 10.5.3 and Table I.2-2), looked up in `_CODES` below; a door
never decides a status from the text of a reason.  A store that kept the instance but
not all of what was sent has a `StoreWarning` too: its C-STORE warning status, which is
also its STOW-RS Warning Reason (0008,1196; PS3.4 B.2.3, PS3.18 Table I.2-1).  The HTTP
status of a STOW-RS response follows from its results (`stow_http_status`, PS3.18
10.5.3).

The outcome's value doubles as a short, stable name ("stored", "resources", …) for
logs, the CLI and JSON reports.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum


class StoreOutcome(StrEnum):
    """Every way a store can end.  The first three are successes."""

    STORED = "stored"
    # Duplicate policy "keep": the SOP Instance UID is already stored; that copy stays
    # and the sender is told it is stored (it is: never two copies).
    DUPLICATE = "duplicate"
    # Duplicate policy "overwrite": the new copy replaced the stored one.
    OVERWRITTEN = "overwritten"
    # Not a DICOM dataset we can parse: truncated, malformed, no SOP Instance UID…
    INVALID = "invalid"
    # A transfer syntax the archive does not know, so it cannot even read the header.
    UNKNOWN_TRANSFER_SYNTAX = "transfer-syntax"
    # The dataset's SOP Class/Instance UIDs differ from those the C-STORE announced.
    DATASET_MISMATCH = "mismatch"
    # Its series is already filed under another study (PS3.3 C.7.3: one study per series).
    SERIES_IN_OTHER_STUDY = "conflict"
    # A study-scoped STOW-RS (POST /studies/{study}) received an instance of another study.
    STUDY_MISMATCH = "study-mismatch"
    # The disk (or quota) is full.
    OUT_OF_RESOURCES = "resources"
    # Anything else: an I/O error, an index write that failed.
    PROCESSING_FAILURE = "error"

    @property
    def ok(self) -> bool:
        """True when the instance is in the archive (stored now or before)."""
        return self in _SUCCESSES

    @property
    def dimse_status(self) -> int:
        """The C-STORE response status (PS3.4 B.2.3)."""
        return _CODES[self][0]

    @property
    def failure_reason(self) -> int | None:
        """The STOW-RS Failure Reason (0008,1197) of a failed instance; None on success."""
        return _CODES[self][1]


class StoreWarning(StrEnum):
    """What a store that kept the instance did to what it was sent (PS3.4 B.2.3: the
    SCP stored it and says so with a warning status; PS3.18 Table I.2-1, the same
    codes as the Warning Reason (0008,1196) of a STOW-RS).  Only what the archive really
    changes has one: a warning never stands for a check the archive does not make."""

    # PS3.4 B.2.3 0xB006 Elements Discarded: File Meta Information (group 0002) found
    # in a data set, left out of the stored file (part10._drop_file_meta).
    ELEMENTS_DISCARDED = "discarded"

    @property
    def dimse_status(self) -> int:
        """The C-STORE warning status, also the STOW-RS Warning Reason (0008,1196)."""
        return _WARNING_CODES[self]


_WARNING_CODES: dict[StoreWarning, int] = {StoreWarning.ELEMENTS_DISCARDED: 0xB006}

_SUCCESSES = frozenset({StoreOutcome.STORED, StoreOutcome.DUPLICATE, StoreOutcome.OVERWRITTEN})

# Outcome → (C-STORE status, PS3.4 B.2.3 | STOW-RS Failure Reason, PS3.18 Table I.2-2).
#   0x0000 success; 0xA700 refused: out of resources; 0xA900 error: data set does not
#   match SOP class; 0xC000 error: cannot understand; 0x0110 processing failure
#   (PS3.7 C.4); 0xC122 referenced transfer syntax not supported (STOW-RS only; over
#   DIMSE the syntax was negotiated, so a dataset the archive cannot read in it is
#   "cannot understand"); 0xC409 study instance UID mismatch, in the Cxxx range, the
#   value dcm4chee uses for the same refusal (a C-STORE never has a study scope).
_CODES: dict[StoreOutcome, tuple[int, int | None]] = {
    StoreOutcome.STORED: (0x0000, None),
    StoreOutcome.DUPLICATE: (0x0000, None),
    StoreOutcome.OVERWRITTEN: (0x0000, None),
    StoreOutcome.INVALID: (0xC000, 0xC000),
    StoreOutcome.UNKNOWN_TRANSFER_SYNTAX: (0xC000, 0xC122),
    StoreOutcome.DATASET_MISMATCH: (0xA900, 0xA900),
    StoreOutcome.SERIES_IN_OTHER_STUDY: (0x0110, 0x0110),
    StoreOutcome.STUDY_MISMATCH: (0x0110, 0xC409),
    StoreOutcome.OUT_OF_RESOURCES: (0xA700, 0xA700),
    StoreOutcome.PROCESSING_FAILURE: (0x0110, 0x0110),
}


def stow_http_status(results: Iterable[tuple[StoreOutcome, StoreWarning | None]]) -> int:
    """The HTTP status of a STOW-RS response from each instance's (outcome, warning)
    (PS3.18 10.5.3.1): 200 when every instance was stored without a warning, 202 when
    some were and warnings or failures exist, 409 when none was."""
    stored = flawed = False
    for outcome, warning in results:
        if outcome.ok:
            stored = True
            flawed = flawed or warning is not None
        else:
            flawed = True
    if not flawed:
        return 200
    return 202 if stored else 409


@dataclass
class StoreResult:
    """One store's outcome and the identity of the instance (as far as it was read)."""

    outcome: StoreOutcome
    sop_instance_uid: str | None = None
    sop_class_uid: str | None = None
    study_instance_uid: str | None = None
    series_instance_uid: str | None = None
    transfer_syntax_uid: str | None = None
    # why it failed, or what its warning is about, in words (a C-STORE Error Comment)
    reason: str | None = None
    # what a store that kept the instance changed of what it was sent, and the tags of
    # the elements it discarded (a C-STORE response's Offending Element, PS3.4 B.2.3)
    warning: StoreWarning | None = None
    discarded: tuple[int, ...] = ()

    @property
    def ok(self) -> bool:
        return self.outcome.ok

    @property
    def dimse_status(self) -> int:
        """The C-STORE response status (PS3.4 B.2.3): the warning's on a stored instance
        with one, else the outcome's."""
        if self.warning is not None and self.outcome.ok:
            return self.warning.dimse_status
        return self.outcome.dimse_status

    @property
    def status(self) -> str:
        """Coarse: "stored" (overwritten included), "duplicate" or "failed"."""
        if not self.outcome.ok:
            return "failed"
        return "duplicate" if self.outcome is StoreOutcome.DUPLICATE else "stored"

    @property
    def failure(self) -> StoreOutcome | None:
        """The outcome of a failed store; None on success."""
        return None if self.outcome.ok else self.outcome
