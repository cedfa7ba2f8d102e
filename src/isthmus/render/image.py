"""Rendered images: a frame as JPEG, PNG or GIF for people to look at (PS3.18 8.3.5, 9.5).

    render(part10, frame=1, media_type="image/png", window=(40, 400), viewport=(256, 256))
    thumbnail(part10, size=128)

Behaviour decided by the standard:
- PS3.18 8.3.5.1.3 viewport: the image is scaled to fit the viewport keeping its aspect
  ratio (here given as (rows, columns)); without one, the image keeps its own size.
- PS3.18 8.3.5.1.2 quality: 1..100 for lossy media types; ignored for PNG/GIF.
- PS3.18 8.3.5.1.4 window (center, width[, function]) replaces the file's VOI; the pipeline
  itself is PS3.4 N.2 (see grayscale.py, color.py).  Window applies to grayscale only.
- PS3.18 8.3.5.1.1 annotation: "patient" and/or "technique" burnt into the image.
- A multi-frame instance in a single-frame media type renders its first frame; image/gif
  with frame=None renders every frame as an animation timed by Frame Time (0018,1063).
"""

from __future__ import annotations

from collections.abc import Iterable
from io import BytesIO

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from pydicom.dataset import Dataset

from isthmus.render.color import rgb8
from isthmus.render.decode import decode_frame
from isthmus.render.errors import RenderError
from isthmus.render.frame_attributes import frame_attributes
from isthmus.render.grayscale import Window, display_values
from isthmus.render.pixel_data import PixelData, open_part10

MEDIA_TYPES = ("image/jpeg", "image/png", "image/gif")
DEFAULT_QUALITY = 90
ANNOTATIONS = ("patient", "technique")
_GRAYSCALE = ("MONOCHROME1", "MONOCHROME2")  # photometric interpretations shown as gray

WindowArg = tuple[float, float] | tuple[float, float, str] | None


def render(
    part10: bytes | bytearray | memoryview,
    frame: int | None = 1,
    media_type: str = "image/jpeg",
    window: WindowArg = None,
    viewport: tuple[int, int] | None = None,
    quality: int | None = None,
    annotation: str | Iterable[str] | None = None,
    invert: bool = False,
) -> bytes:
    """One frame (1-based) of a Part 10 file as an encoded image; see the module docstring."""
    return render_pixels(
        open_part10(part10), frame, media_type, window, viewport, quality, annotation, invert
    )


def render_pixels(
    pixels: PixelData,
    frame: int | None = 1,
    media_type: str = "image/jpeg",
    window: WindowArg = None,
    viewport: tuple[int, int] | None = None,
    quality: int | None = None,
    annotation: str | Iterable[str] | None = None,
    invert: bool = False,
) -> bytes:
    """`render` for pixel data already located (pixel_data.open_part10 / open_at)."""
    media_type = _check_media_type(media_type)
    quality = _check_quality(quality)
    labels = _check_annotation(annotation)
    voi = _check_window(window)
    numbers = [1 if frame is None else frame]
    if frame is None and media_type == "image/gif":
        numbers = list(range(1, pixels.number_of_frames + 1))
    images = []
    for number in numbers:
        image = frame_image(pixels, pixels.check_frame(number), voi, invert)
        image = _fit(image, viewport)
        if labels:
            _annotate(image, pixels.dataset, labels, number, pixels.number_of_frames)
        images.append(image)
    return _encode(images, media_type, quality, pixels.dataset)


def thumbnail(
    part10: bytes | bytearray | memoryview, size: int = 128, media_type: str = "image/jpeg"
) -> bytes:
    """A small rendering of the first frame, fitting in size×size (PS3.18 9.5.1.2.2)."""
    if not 1 <= size <= 4096:
        raise RenderError(f"thumbnail size {size} is outside 1..4096")
    return render(
        part10,
        1,
        media_type,
        viewport=(size, size),
        quality=75 if media_type == "image/jpeg" else None,
    )


def frame_image(
    pixels: PixelData, index: int, window: Window | None = None, invert: bool = False
) -> Image.Image:
    """Frame `index` (0-based) as an 8-bit Pillow image (mode L or RGB) at full size."""
    grayscale = pixels.photometric_interpretation in _GRAYSCALE
    # display_values keeps Bits Stored itself (grayscale.stored_values)
    array, photometric = decode_frame(pixels, index, as_rgb=True, correct_unused_bits=not grayscale)
    attrs = frame_attributes(pixels.dataset, index)
    if photometric in _GRAYSCALE:
        if array.ndim != 2:
            raise RenderError(f"grayscale frame has shape {array.shape}")
        shown = display_values(
            array, attrs, pixels.bits_stored, pixels.pixel_representation == 1, photometric, window
        )
        mode = "L"
    else:
        shown, mode = rgb8(array, photometric, pixels.bits_stored, attrs), "RGB"
    if invert:
        shown = 255 - shown
    return Image.fromarray(np.ascontiguousarray(shown), mode)


def fit_size(rows: int, columns: int, viewport: tuple[int, int]) -> tuple[int, int]:
    """(rows, columns) scaled to fit in `viewport` keeping the aspect ratio (PS3.18 8.3.5.1.3)."""
    v_rows, v_columns = viewport
    if v_rows < 1 or v_columns < 1:
        raise RenderError(f"viewport {v_rows}x{v_columns} must be at least 1x1")
    scale = min(v_rows / rows, v_columns / columns)
    return max(1, round(rows * scale)), max(1, round(columns * scale))


def _fit(image: Image.Image, viewport: tuple[int, int] | None) -> Image.Image:
    if viewport is None:
        return image
    rows, columns = fit_size(image.height, image.width, viewport)
    if (rows, columns) == (image.height, image.width):
        return image
    shrinking = rows < image.height
    return image.resize(
        (columns, rows), Image.Resampling.LANCZOS if shrinking else Image.Resampling.BILINEAR
    )


def _check_media_type(media_type: str) -> str:
    media_type = (media_type or "").split(";")[0].strip().lower()
    if media_type not in MEDIA_TYPES:
        raise RenderError(f"cannot render as {media_type!r}; supported: {', '.join(MEDIA_TYPES)}")
    return media_type


def _check_window(window: WindowArg) -> Window | None:
    if window is None:
        return None
    try:
        center, width, *function = window
        return Window(float(center), float(width), *(str(f) for f in function[:1]))
    except (TypeError, ValueError) as exc:
        if isinstance(exc, RenderError):
            raise
        raise RenderError(f"window must be (center, width[, function]), got {window!r}") from exc


def _check_quality(quality: int | None) -> int:
    if quality is None:
        return DEFAULT_QUALITY
    if not 1 <= int(quality) <= 100:
        raise RenderError(f"quality {quality} is outside 1..100 (PS3.18 8.3.5.1.2)")
    return int(quality)


def _check_annotation(annotation: str | Iterable[str] | None) -> list[str]:
    if not annotation:
        return []
    labels = annotation.split(",") if isinstance(annotation, str) else list(annotation)
    labels = [label.strip().lower() for label in labels if label.strip()]
    unknown = [label for label in labels if label not in ANNOTATIONS]
    if unknown:
        raise RenderError(f"unknown annotation {unknown[0]!r}; supported: patient, technique")
    return labels


def _annotate(image: Image.Image, ds: Dataset, labels: list[str], number: int, frames: int) -> None:
    """Burn patient and/or technique text into the top-left corner (PS3.18 8.3.5.1.1)."""
    lines = []
    if "patient" in labels:
        lines.append(f"{ds.get('PatientName', '')}  {ds.get('PatientID', '')}".strip())
        lines.append(f"{ds.get('StudyDate', '')}  {ds.get('StudyDescription', '')}".strip())
    if "technique" in labels:
        lines.append(f"{ds.get('Modality', '')}  {ds.get('SeriesDescription', '')}".strip())
        lines.append(f"frame {number}/{frames}")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    white = 255 if image.mode == "L" else (255, 255, 255)
    black = 0 if image.mode == "L" else (0, 0, 0)
    for row, text in enumerate(line for line in lines if line):
        draw.text((4, 4 + 12 * row), text, fill=white, font=font, stroke_width=1, stroke_fill=black)


def _encode(images: list[Image.Image], media_type: str, quality: int, ds: Dataset) -> bytes:
    out = BytesIO()
    if media_type == "image/jpeg":
        images[0].save(out, "JPEG", quality=quality)
    elif media_type == "image/png":
        images[0].save(out, "PNG", compress_level=1)
    else:
        frames = [image if image.mode == "L" else image.quantize(256) for image in images]
        duration = float(ds.get("FrameTime", 0) or 0) or 100.0
        frames[0].save(
            out,
            "GIF",
            save_all=len(frames) > 1,
            append_images=frames[1:],
            duration=round(duration),
            loop=0,
        )
    return out.getvalue()
