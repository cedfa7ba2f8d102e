"""Errors of the pixel layer.  Each is a ValueError whose message can be shown to a client.

The doors map them to their protocol: FrameNotFound → HTTP 404 (PS3.18 10.4.1.1.5) or
C-GET/C-MOVE failure; TranscodeError → HTTP 406 or "no acceptable presentation context";
RenderError → HTTP 400/406; NoPixelData → HTTP 404 (no pixel data to render or slice).
"""

from __future__ import annotations


class PixelDataError(ValueError):
    """Base class: the pixel data cannot be delivered as asked."""


class NoPixelData(PixelDataError):
    """The instance has no Pixel Data (7FE0,0010) (e.g. a structured report)."""


class FrameNotFound(PixelDataError):
    """A frame number is < 1 or > Number of Frames (PS3.18 10.4.1.1.5)."""


class DecodeError(PixelDataError):
    """The pixel data could not be decoded (no codec here, or a damaged bitstream)."""


class TranscodeError(PixelDataError):
    """No conversion to the requested transfer syntax exists here (PS3.18 8.7.3.5)."""


class RenderError(PixelDataError):
    """The instance cannot be rendered as asked (media type, parameters, photometric)."""
