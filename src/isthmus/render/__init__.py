"""Pixel data below the doors: frame extraction, transcoding between transfer syntaxes,
rendering to JPEG/PNG/GIF (window/level, modality and VOI LUTs, photometric interpretations).

Used by the DICOMweb door (WADO-RS frames, rendered, thumbnail, transfer-syntax negotiation),
WADO-URI, and the DIMSE door's C-MOVE/C-GET when a peer does not accept the stored syntax.

    from isthmus.render import (get_frames, get_frames_at, transcode, can_transcode,
                                render, thumbnail)

Every error is a PixelDataError (a ValueError) with a message fit for the client:
FrameNotFound, NoPixelData, DecodeError, TranscodeError, RenderError.
"""

from isthmus.render.errors import (
    DecodeError,
    FrameNotFound,
    NoPixelData,
    PixelDataError,
    RenderError,
    TranscodeError,
)
from isthmus.render.frames import Frame, get_frames, get_frames_at
from isthmus.render.image import render, render_pixels, thumbnail
from isthmus.render.media import media_type_for, transfer_syntaxes_for
from isthmus.render.pixel_data import PixelData, file_reader, memory_reader, open_at, open_part10
from isthmus.render.transcode import can_transcode, transcode

__all__ = [
    "DecodeError",
    "Frame",
    "FrameNotFound",
    "NoPixelData",
    "PixelData",
    "PixelDataError",
    "RenderError",
    "TranscodeError",
    "can_transcode",
    "file_reader",
    "get_frames",
    "get_frames_at",
    "media_type_for",
    "memory_reader",
    "open_at",
    "open_part10",
    "render",
    "render_pixels",
    "thumbnail",
    "transcode",
    "transfer_syntaxes_for",
]
