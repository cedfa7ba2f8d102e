"""The attributes that transform one frame's values, including functional groups.

Enhanced multi-frame instances put Rescale Slope/Intercept in the Pixel Value Transformation
functional group and Window Center/Width in the Frame VOI LUT functional group, shared by all
frames or per frame (PS3.3 C.7.6.16: a per-frame value overrides the shared one, which
overrides the top level).
"""

from __future__ import annotations

from pydicom.dataset import Dataset

# Functional group macros (PS3.3 C.7.6.16.2.9, C.7.6.16.2.10) and what they carry.
GROUPS = {
    "PixelValueTransformationSequence": ("RescaleSlope", "RescaleIntercept", "RescaleType"),
    "FrameVOILUTSequence": ("WindowCenter", "WindowWidth", "VOILUTFunction"),
}


def frame_attributes(ds: Dataset, index: int) -> Dataset:
    """`ds` itself when there are no functional groups; otherwise a Dataset with the
    top-level elements and the shared and per-frame (`index`, 0-based) group values."""
    shared = ds.get("SharedFunctionalGroupsSequence")
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if not shared and not per_frame:
        return ds
    attrs = Dataset()
    for elem in ds:
        if elem.keyword not in (
            "SharedFunctionalGroupsSequence",
            "PerFrameFunctionalGroupsSequence",
        ):
            attrs.add(elem)
    for groups in (
        shared[0] if shared else None,
        per_frame[index] if per_frame and index < len(per_frame) else None,
    ):
        if groups is not None:
            _overlay(attrs, groups)
    implicit, little = ds.original_encoding
    attrs.set_original_encoding(implicit, little, ds.original_character_set)
    return attrs


def _overlay(attrs: Dataset, groups: Dataset) -> None:
    for sequence, keywords in GROUPS.items():
        items = groups.get(sequence)
        if not items:
            continue
        for keyword in keywords:
            if keyword in items[0]:
                attrs.add(items[0][keyword])
