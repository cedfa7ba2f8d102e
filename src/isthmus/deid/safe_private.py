"""Retain Safe Private (PS3.15 E.3.10): the private attributes known to be safe.

A private attribute is known by its private creator, its group and its element offset
within the creator's block (PS3.5 7.8.1).  The list below is deliberately short: numeric
acquisition parameters that research on MR diffusion and quantitative imaging needs,
that vendors document in their DICOM conformance statements, and that cannot hold text
(the VR is numeric, and an element whose VR is not the listed one or UN is removed).
Besides the list, a data set may say itself which of its private attributes are safe
(PS3.3 C.12.1.1.7, Private Data Element Characteristics Sequence (0008,0300)): a block
whose Block Identifying Information Status is SAFE is kept whole, and of a MIXED block
the elements its Nonidentifying Private Elements (0008,0304) name.  Everything else
private is removed, as the Basic Profile says; the private creator element of a block is
kept only when one of its elements is.
"""

from __future__ import annotations

from pydicom.dataset import Dataset

# (private creator, group, element offset or None for the whole block)
Declared = set[tuple[str, int, int | None]]

# (private creator, group, element offset) → (VR, what it is)
SAFE_PRIVATE: dict[tuple[str, int, int], tuple[str, str]] = {
    ("SIEMENS MR HEADER", 0x0019, 0x0A): ("US", "number of images in mosaic"),
    ("SIEMENS MR HEADER", 0x0019, 0x0B): ("DS", "slice measurement duration"),
    ("SIEMENS MR HEADER", 0x0019, 0x0C): ("IS", "diffusion b-value"),
    ("SIEMENS MR HEADER", 0x0019, 0x0E): ("FD", "diffusion gradient direction"),
    ("SIEMENS MR HEADER", 0x0019, 0x27): ("FD", "diffusion b-matrix"),
    ("SIEMENS MR HEADER", 0x0019, 0x28): ("FD", "bandwidth per pixel phase encode"),
    ("GEMS_PARM_01", 0x0043, 0x39): ("IS", "slice (diffusion b-value in the first value)"),
    ("GEMS_ACQU_01", 0x0019, 0xBB): ("DS", "diffusion direction, x"),
    ("GEMS_ACQU_01", 0x0019, 0xBC): ("DS", "diffusion direction, y"),
    ("GEMS_ACQU_01", 0x0019, 0xBD): ("DS", "diffusion direction, z"),
    ("Philips MR Imaging DD 001", 0x2005, 0x0E): ("FL", "scale slope (floating point)"),
    ("Philips MR Imaging DD 001", 0x2005, 0xB0): ("FL", "diffusion direction RL"),
    ("Philips MR Imaging DD 001", 0x2005, 0xB1): ("FL", "diffusion direction AP"),
    ("Philips MR Imaging DD 001", 0x2005, 0xB2): ("FL", "diffusion direction FH"),
}


def declared(ds: Dataset) -> Declared:
    """The private elements the data set declares safe (Private Data Element
    Characteristics Sequence, PS3.3 C.12.1.1.7)."""
    out: Declared = set()
    for item in ds.get("PrivateDataElementCharacteristicsSequence") or ():
        group, creator = item.get("PrivateGroupReference"), item.get("PrivateCreatorReference")
        if group is None or not creator:
            continue
        status = str(item.get("BlockIdentifyingInformationStatus", "")).strip().upper()
        if status == "SAFE":
            out.add((str(creator).strip(), int(group), None))
        elif status == "MIXED":
            elements = item.get("NonidentifyingPrivateElements") or []
            elements = [elements] if isinstance(elements, int) else elements
            out.update((str(creator).strip(), int(group), int(e) & 0xFF) for e in elements)
    return out


def is_safe(creator: str | None, tag: int, vr: str, declared: Declared | None = None) -> bool:
    """Whether the private element `tag` (whose block's creator is `creator`) is safe:
    listed above with its VR, or declared safe by the data set (`declared`)."""
    if creator is None:
        return False
    creator, group, offset = creator.strip(), tag >> 16, tag & 0xFF
    declared = declared or set()
    if (creator, group, None) in declared or (creator, group, offset) in declared:
        return True
    known = SAFE_PRIVATE.get((creator, group, offset))
    return known is not None and vr in (known[0], "UN")
