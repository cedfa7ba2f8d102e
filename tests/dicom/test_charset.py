"""ISO 2022 IR 58 (GB 2312, PS3.5 Annex K) reads and writes as the standard's example."""

from __future__ import annotations

import struct
from io import BytesIO

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

from isthmus.dicom import part10, uids
from isthmus.dimse import messages as msg
from isthmus.dimse.identifiers import identifier_keys

IR_58 = ["", "ISO 2022 IR 58"]
# PS3.5 Example K.2-1: "Zhang^XiaoDong=张^小东=", each run of GB 2312 characters after
# ESC $ ) A (G1), reset to ASCII at every delimiter (PS3.5 6.1.2.5.3).
K_2_1 = b"Zhang^XiaoDong=\x1b$)A\xd5\xc5^\x1b$)A\xd0\xa1\xb6\xab="
NAME = "Zhang^XiaoDong=张^小东"


def _element(tag: int, vr: bytes, value: bytes) -> bytes:
    if len(value) % 2:
        value += b" "
    return struct.pack("<HH", tag >> 16, tag & 0xFFFF) + vr + struct.pack("<H", len(value)) + value


def _dataset(*elements: tuple[int, bytes, bytes]) -> bytes:
    charset = _element(0x00080005, b"CS", b"\\ISO 2022 IR 58")
    return charset + b"".join(_element(*e) for e in sorted(elements))


UIDS = (
    (0x00080016, b"UI", b"1.2.840.10008.5.1.4.1.1.7\x00"),
    (0x00080018, b"UI", b"1.2.3.4.1"),
    (0x0020000D, b"UI", b"1.2.3.4.2"),
    (0x0020000E, b"UI", b"1.2.3.4.3"),
)


def test_a_name_in_iso_2022_ir_58_is_read_without_its_escape_sequences() -> None:
    data = _dataset((0x00100010, b"PN", K_2_1), *UIDS)
    header = part10.read_header(data, uids.EXPLICIT_VR_LITTLE_ENDIAN)
    assert header.json["00100010"]["Value"] == [
        {"Alphabetic": "Zhang^XiaoDong", "Ideographic": "张^小东"}
    ]


def test_a_query_in_iso_2022_ir_58_asks_for_the_characters_it_encodes() -> None:
    """PS3.4 C.2.2.2: the key is matched as characters, whatever encoded them."""
    data = _dataset(
        (0x00080052, b"CS", b"STUDY "),
        (0x00100010, b"PN", b"Zhang*=\x1b$)A\xd5\xc5*"),
        (0x00081030, b"LO", b"\x1b$)A\xd0\xa1\xb6\xab"),
    )
    keys = identifier_keys(msg.decode_identifier(data, uids.EXPLICIT_VR_LITTLE_ENDIAN))
    assert keys[0x00100010] == "Zhang*=张*"
    assert keys[0x00081030] == "小东"


def test_a_name_written_in_iso_2022_ir_58_designates_gb2312_before_each_run() -> None:
    """What a data set written in the stored character set holds (de-identification)."""
    ds = Dataset()
    ds.SpecificCharacterSet = IR_58
    ds.PatientName = NAME
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    out = BytesIO()
    ds.save_as(out, implicit_vr=False, little_endian=True)
    assert K_2_1.rstrip(b"=") in out.getvalue()
