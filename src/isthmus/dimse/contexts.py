"""Presentation contexts for sending stored instances, and the bytes to send on them.

Both storage requestors use this: the SCP's C-MOVE and C-GET sub-operations
(retrieve.py) and `isthmus send` (scu.py).  An instance goes out byte for byte in
its stored transfer syntax when the receiver accepted it, transcoded
(isthmus.render) to an accepted one otherwise (PS3.5 10: every receiver of a
storage SOP class can take an uncompressed syntax).
"""

from __future__ import annotations

import logging

from isthmus.archive import InstanceRow
from isthmus.dicom import part10, uids

log = logging.getLogger(__name__)

MAX_CONTEXTS = 128  # PS3.8 9.3.2.2: presentation context IDs are odd numbers 1-255


def contexts_for(rows: list[InstanceRow]) -> list[tuple[str, list[str]]]:
    """Presentation contexts to propose for stored instances."""
    return contexts_for_syntaxes([(r.sop_class_uid, r.transfer_syntax_uid) for r in rows])


def contexts_for_syntaxes(pairs: list[tuple[str, str]]) -> list[tuple[str, list[str]]]:
    """For (SOP class, transfer syntax) pairs: each syntax in a context of its own, so
    that instances go as they are, plus one uncompressed context per class, the fallback
    we can always transcode to (PS3.5 10).

    At most 128 contexts fit in one association (PS3.8 9.3.2.2).  Beyond that the
    fallbacks are kept, one per class, and the as-stored contexts fill what room is
    left: an instance whose own syntax was not proposed is transcoded, not failed."""
    stored = [(sop_class, [ts]) for sop_class, ts in dict.fromkeys(pairs)]
    fallbacks: list[tuple[str, list[str]]] = [
        (sop_class, [str(ts) for ts in uids.PREFERRED_UNCOMPRESSED])
        for sop_class in dict.fromkeys(c for c, _t in pairs)
    ]
    if len(stored) + len(fallbacks) <= MAX_CONTEXTS:
        return stored + fallbacks
    room = max(MAX_CONTEXTS - len(fallbacks), 0)
    log.warning(
        "sending needs %d presentation contexts; proposing %d: the %d uncompressed "
        "fallbacks and %d as stored (the other instances are transcoded)",
        len(stored) + len(fallbacks),
        MAX_CONTEXTS,
        min(len(fallbacks), MAX_CONTEXTS),
        room,
    )
    return (stored[:room] + fallbacks)[:MAX_CONTEXTS]


def accepted_syntaxes(accepted: dict[tuple[str, str], int], sop_class: str) -> dict[str, int]:
    """Transfer syntax → context id for `sop_class`, from a requestor's accepted contexts."""
    return {ts: cid for (abstract, ts), cid in accepted.items() if abstract == sop_class}


def encode_for(
    data: bytes, transfer_syntax: str, syntaxes: dict[str, int]
) -> tuple[int, memoryview]:
    """The context and dataset bytes to send a Part 10 file on: as stored when its syntax
    was accepted, otherwise transcoded to an accepted one (uncompressed first)."""
    if transfer_syntax in syntaxes:
        context_id = syntaxes[transfer_syntax]
    else:
        target = next(
            (ts for ts in (*uids.PREFERRED_UNCOMPRESSED, *syntaxes) if ts in syntaxes), None
        )
        if target is None:
            raise ValueError("the receiver accepted no transfer syntax for this SOP class")
        # Here, not at the top: the codecs load only when an instance needs transcoding
        # (`isthmus send` and the DIMSE door start without them).  No cycle: render
        # imports no door.
        from isthmus.render.transcode import transcode

        data = transcode(data, target)
        context_id = syntaxes[target]
    return context_id, memoryview(data)[part10.dataset_offset(data) :]
