"""Retain Safe Private (PS3.15 E.3.10): the private attributes known to be safe.

A private attribute is known by its private creator, its group and its element offset
within the creator's block (PS3.5 7.8.1).  The list below is deliberately short: numeric
acquisition parameters that research on MR diffusion and quantitative imaging needs,
that vendors document in their DICOM conformance statements, and that cannot hold text
(the VR is numeric, and an element whose VR is not the listed one or UN is removed).
Everything else private is removed, as the Basic Profile says; the private creator
element of a block is kept only when one of its elements is.
"""

from __future__ import annotations

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


def is_safe(creator: str | None, tag: int, vr: str) -> bool:
    """Whether the private element `tag` (whose block's creator is `creator`) is safe."""
    if creator is None:
        return False
    group, element = tag >> 16, tag & 0xFFFF
    known = SAFE_PRIVATE.get((creator.strip(), group, element & 0xFF))
    return known is not None and vr in (known[0], "UN")
