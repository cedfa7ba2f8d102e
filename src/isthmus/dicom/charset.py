"""pydicom's decoding of ISO 2022 IR 58 (GB 2312, PS3.5 Annex K), set right.

pydicom counts the Python codec of ISO 2022 IR 58 ("iso_ir_58", an alias of gb2312)
among the codecs that read and write their own ISO 2022 escape sequences, as
iso2022_jp does; gb2312 is EUC-CN and knows none.  So a value of PS3.5 Example
K.2-1, ``Zhang^XiaoDong=ESC $ ) A D5 C5 ^ ESC $ ) A D0 A1 B6 AB=``, decoded to
``Zhang^XiaoDong=\\x1b$)A张^\\x1b$)A小东`` (the escape sequences kept as text: in the
index, DICOM JSON and XML, C-FIND responses) and ``张^小东`` was encoded without the
ESC $ ) A that designates G1 (PS3.5 6.1.2.5.3).  Treated as the single-byte
extensions are (escape sequence stripped on reading, written before each run of
GB 2312 characters), both directions give the standard's bytes.  pydicom 3.0 and its
main branch have the mistake; `repair` runs when `isthmus` is imported.
"""

from __future__ import annotations

import pydicom.charset

_GB2312 = "iso_ir_58"


def repair() -> None:
    """Take ISO 2022 IR 58 out of pydicom's codecs that handle escape sequences."""
    handled: tuple[str, ...] = pydicom.charset.handled_encodings
    repaired = tuple(e for e in handled if e != _GB2312)
    pydicom.charset.handled_encodings = repaired  # type: ignore[assignment]  # typed as 3
