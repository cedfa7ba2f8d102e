"""What a transfer moved, for the audit trail: DICOM Instances Transferred (PS3.15
A.5.3.7), one message per study, written by both ends (the source "sent", the
destination "received"), named by the other site and the AE titles."""

from __future__ import annotations

import io
import struct
import threading
from typing import Any

from pydicom import dcmread

from isthmus.archive import Activity
from isthmus.archive.activity import MINOR_FAILURE, SUCCESS
from isthmus.dicom.headers import Unsupported
from isthmus.dicom.scan import top_level_text

STUDY_INSTANCE_UID = 0x0020000D


class TransferTally:
    """Study → SOP class → count of one transfer's instances."""

    def __init__(self) -> None:
        self.studies: dict[str, dict[str, int]] = {}
        self._lock = threading.Lock()

    def count(self, sop_class: str, transfer_syntax: str, part10: bytes) -> None:
        study = _study_uid(part10, transfer_syntax)
        with self._lock:
            classes = self.studies.setdefault(study, {})
            classes[sop_class] = classes.get(sop_class, 0) + 1

    def tell(
        self,
        activity: Activity,
        *,
        direction: str,
        transfer_id: str,
        peer_site: str,
        local_aet: str,
        status: int,
    ) -> None:
        with self._lock:
            studies = [{"uid": uid, "sop_classes": c} for uid, c in self.studies.items()]
        activity.audit(
            "relay-transfer",
            outcome=SUCCESS if status == 0 else MINOR_FAILURE,
            door="relay",
            user=peer_site,
            address=f"{peer_site} (relay)",
            local=local_aet,
            peer=peer_site,
            studies=studies,
            detail={"direction": direction, "transfer": transfer_id, "status": status},
        )


def _study_uid(part10: bytes, transfer_syntax: str) -> str:
    """The Study Instance UID of a Part 10 instance (its header only): walked to, or
    read by pydicom when the encoding is one the walk declines."""
    try:
        return top_level_text(part10, transfer_syntax, STUDY_INSTANCE_UID) or ""
    except (Unsupported, ValueError, struct.error):
        pass
    try:
        ds: Any = dcmread(io.BytesIO(part10), stop_before_pixels=True, specific_tags=[0x0020000D])
        return str(ds.get("StudyInstanceUID", ""))
    except Exception:  # an instance the destination rejects anyway: audited without a study
        return ""
