"""Presentation contexts proposed for sending stored instances (dimse/contexts.py)."""

from __future__ import annotations

from isthmus.dicom import uids
from isthmus.dimse.contexts import MAX_CONTEXTS, contexts_for_syntaxes

JPEG_LS, RLE = "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.5"
FALLBACK = list(uids.PREFERRED_UNCOMPRESSED)


def test_each_stored_syntax_has_its_context_and_each_class_a_fallback() -> None:
    pairs = [("1.2.3.1", JPEG_LS), ("1.2.3.1", RLE), ("1.2.3.2", JPEG_LS), ("1.2.3.1", RLE)]
    assert contexts_for_syntaxes(pairs) == [
        ("1.2.3.1", [JPEG_LS]),
        ("1.2.3.1", [RLE]),
        ("1.2.3.2", [JPEG_LS]),
        ("1.2.3.1", FALLBACK),
        ("1.2.3.2", FALLBACK),
    ]


def test_past_128_contexts_every_class_keeps_its_uncompressed_fallback() -> None:
    """PS3.8 9.3.2.2 allows 128 contexts; 70 classes in two syntaxes each need 210.  What
    is cut is as-stored contexts (those instances are transcoded), never a class's only
    way to be sent."""
    classes = [f"1.2.3.{n}" for n in range(70)]
    pairs = [(c, ts) for c in classes for ts in (JPEG_LS, RLE)]
    contexts = contexts_for_syntaxes(pairs)
    assert len(contexts) == MAX_CONTEXTS
    assert {c for c, syntaxes in contexts if syntaxes == FALLBACK} == set(classes)
    assert sum(1 for _c, syntaxes in contexts if syntaxes != FALLBACK) == MAX_CONTEXTS - 70
