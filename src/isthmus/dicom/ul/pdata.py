"""P-DATA: presentation data values, fragmentation and reassembly (PS3.8 9.3.5, Annex E).

A DIMSE message is a command set and maybe a data set, each sent as a sequence of
PDV fragments; the message control header (PS3.8 E.2) says which it is and which
fragment is last.  These are the functions on the C-STORE hot path: they work on
memoryviews of the buffer a PDU was read into, build no objects per PDV beyond a
tuple, and copy a fragment only when a message spans several (to join them).
"""

from __future__ import annotations

import struct
from collections.abc import Container, Iterator, MutableSequence

from isthmus.dicom.ul.errors import INVALID_PARAMETER, UNEXPECTED_PARAMETER, PDUError

P_DATA_TF = 0x04  # PDU type of a P-DATA-TF (PS3.8 9.3.1); pdu.py builds on this module

# The smallest Maximum Length Received (PS3.8 D.1) through which a P-DATA-TF can carry
# data: a PDV item is 4 bytes of length, a context ID, a control header and a fragment,
# whose length must be even (DCMTK aborts on odd fragments): 2 bytes at least.
MIN_PEER_MAX_LENGTH = 8
COMMAND = 1  # message control header bit 0 (PS3.8 E.2)
LAST = 2  # bit 1

Fragment = tuple[int, int, memoryview]  # presentation context ID, control header, value
_LENGTH = struct.Struct(">I").unpack_from


def split_pdvs(
    body: memoryview,
    accepted: Container[int] | None = None,
    out: MutableSequence[Fragment] | None = None,
) -> MutableSequence[Fragment]:
    """The PDVs of a P-DATA-TF body (after its 6-byte header), as views into it.

    PS3.8 9.3.5: one or more PDV items, each `length(4) context-id(1) control(1) value`,
    length counting the last two fields and the value.  With `accepted`, a PDV on any
    other presentation context is refused (PS3.8 9.3.5.1: an accepted context).
    Fragments are appended to `out` when given (the acceptor's queue), else to a new list.
    Bits 2-7 of the control header are not tested (PS3.8 E.2: "never checked").
    """
    if out is None:
        out = []
    append = out.append
    pos, end = 0, len(body)
    if not end:
        raise PDUError("P-DATA-TF carries no PDV", INVALID_PARAMETER)
    while pos < end:
        if end - pos < 6:
            raise PDUError("truncated PDV item", INVALID_PARAMETER)
        (length,) = _LENGTH(body, pos)
        if length < 2 or pos + 4 + length > end:
            raise PDUError(f"PDV item length {length} does not fit the PDU", INVALID_PARAMETER)
        context_id = body[pos + 4]
        if accepted is not None and context_id not in accepted:
            raise PDUError(
                f"PDV on presentation context [{context_id}] that was not accepted",
                INVALID_PARAMETER,
            )
        append((context_id, body[pos + 5], body[pos + 6 : pos + 4 + length]))
        pos += 4 + length
    return out


def fragment(
    context_id: int, payload: bytes | memoryview, is_command: bool, max_length: int
) -> Iterator[bytes | memoryview]:
    """P-DATA-TF PDUs carrying `payload` in fragments that respect the receiver's Maximum
    Length Received (PS3.8 D.1, E.2); 0 means unlimited.  Yields each PDU's headers, then
    a view of its fragment, for a gathering send.  Fragments have even lengths, as DICOM
    data has (DCMTK aborts on an odd one), also when the peer's maximum is odd."""
    limit = (max_length or 0x7FFFFFFF) - 6  # PDV item header: length(4) + id(1) + control(1)
    limit -= limit % 2
    if limit < 2:  # would yield empty fragments forever; negotiation refuses such peers
        raise ValueError(f"maximum PDU length {max_length} cannot carry a PDV")
    view = memoryview(payload)
    total = len(view)
    pos = 0
    while True:
        chunk = view[pos : pos + limit]
        pos += len(chunk)
        last = pos >= total
        control = (COMMAND if is_command else 0) | (LAST if last else 0)
        size = len(chunk)
        yield struct.pack(">BBIIBB", P_DATA_TF, 0, size + 6, size + 2, context_id, control)
        yield chunk
        if last:
            return


class Assembler:
    """Joins PDV fragments into a command set, then its data set (PS3.8 9.3.5, E.2).

    PS3.8 E.2 and PS3.7 6.3.1: a message starts with its command fragments, the data
    set's follow on the same presentation context, and the two never interleave.  The
    caller decodes the command (PS3.7) and says with `expect_dataset()` whether a data
    set follows; `reset()` after each complete message.
    """

    __slots__ = ("context_id", "_kind", "_fragments")

    def __init__(self) -> None:
        self.context_id: int | None = None
        self._kind = COMMAND  # the control bit 0 the next fragment must have
        self._fragments: list[memoryview] = []

    @property
    def in_command(self) -> bool:
        """Is the command set still being assembled (or not yet begun)?"""
        return self._kind == COMMAND

    def reset(self) -> None:
        self.context_id, self._kind = None, COMMAND
        self._fragments = []

    def expect_dataset(self) -> None:
        self._kind = 0

    def add(self, context_id: int, control: int, data: memoryview) -> memoryview | None:
        """Add a fragment; the whole command set or data set once its last one came."""
        if context_id != self.context_id:
            if self.context_id is not None:
                raise PDUError("context changed mid-message", UNEXPECTED_PARAMETER)
            if not control & COMMAND:
                raise PDUError("dataset before command", UNEXPECTED_PARAMETER)
            self.context_id = context_id
        if control & COMMAND != self._kind:
            raise PDUError("command and dataset interleaved", UNEXPECTED_PARAMETER)
        if not control & LAST:
            self._fragments.append(data)
            return None
        if not self._fragments:
            return data
        self._fragments.append(data)
        whole = memoryview(b"".join(self._fragments))
        self._fragments = []
        return whole
