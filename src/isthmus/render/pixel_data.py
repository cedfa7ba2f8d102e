"""Where the pixel data of a Part 10 file is, and how its frames are laid out.

Only the header is parsed (up to Pixel Data, PS3.5 7.1); pixel values are reached through a
`Read` callable, so an instance can be served from memory or from a seekable file without
loading or decoding it.  The archive records the value offset at ingest (InstanceRow.pixel_offset),
which lets `open_at` parse just the bytes before it.
"""

from __future__ import annotations

import threading
import zlib
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import BinaryIO, cast

from pydicom.dataset import Dataset
from pydicom.filereader import read_dataset
from pydicom.pixels.decoders.base import DecodeOptions
from pydicom.uid import ExplicitVRLittleEndian

from isthmus.dicom import part10, uids
from isthmus.render.errors import DecodeError, FrameNotFound, NoPixelData

Read = Callable[[int, int], bytes | memoryview]
"""read(offset, length) -> up to `length` bytes of the Part 10 file starting at `offset`
(a memoryview for a file in memory: no copy)."""

UNDEFINED_LENGTH = 0xFFFFFFFF
PIXEL_KEYWORDS = {
    0x7FE00010: "PixelData",
    0x7FE00008: "FloatPixelData",
    0x7FE00009: "DoubleFloatPixelData",
}


def memory_reader(data: bytes | bytearray | memoryview) -> Read:
    """A `Read` over bytes in memory (slices a memoryview: no copy)."""
    view = memoryview(data)
    return lambda offset, length: view[offset : offset + length]


def file_reader(fh: BinaryIO) -> Read:
    """A `Read` over a seekable binary file (e.g. Archive.open_instance)."""

    def read(offset: int, length: int) -> bytes:
        fh.seek(offset)
        return fh.read(length)

    return read


@dataclass
class PixelData:
    """The Image Pixel module (PS3.3 C.7.6.3) and the location of the pixel value."""

    dataset: Dataset  # every top-level element before the pixel data
    stored_transfer_syntax: str
    transfer_syntax: str  # of the bytes `read` returns (Explicit VR LE once inflated)
    read: Read
    tag: int  # 7FE00010, 7FE00008 or 7FE00009
    vr: str
    offset: int  # of the pixel value, in the bytes `read` returns
    length: int  # UNDEFINED_LENGTH when encapsulated
    rows: int
    columns: int
    samples_per_pixel: int
    bits_allocated: int
    bits_stored: int
    pixel_representation: int
    photometric_interpretation: str
    planar_configuration: int
    number_of_frames: int

    @property
    def encapsulated(self) -> bool:
        return self.length == UNDEFINED_LENGTH

    @property
    def little_endian(self) -> bool:
        return uids.encoding(self.transfer_syntax)[1]

    @property
    def pixel_keyword(self) -> str:
        return PIXEL_KEYWORDS[self.tag]

    @property
    def frame_bits(self) -> int:
        """Bits of one native frame (PS3.5 8.1.1; frames are contiguous, not padded).

        YBR_FULL_422 native data holds two luminance and one pair of chrominance samples
        per two pixels, so 2 samples per pixel (PS3.3 C.7.6.3.1.2).
        """
        samples = 2 if self.photometric_interpretation == "YBR_FULL_422" else self.samples_per_pixel
        return self.rows * self.columns * samples * self.bits_allocated

    def check_frame(self, number: int) -> int:
        """0-based index of a 1-based frame number, or FrameNotFound (PS3.18 10.4.1.1.5)."""
        if not 1 <= number <= self.number_of_frames:
            raise FrameNotFound(
                f"frame {number} does not exist: the instance has {self.number_of_frames}"
                f" frame{'s' if self.number_of_frames != 1 else ''}"
            )
        return number - 1

    def decode_options(self) -> DecodeOptions:
        """The keyword options pydicom's Decoder.as_array needs for one frame."""
        return DecodeOptions(
            rows=self.rows,
            columns=self.columns,
            samples_per_pixel=self.samples_per_pixel,
            bits_allocated=self.bits_allocated,
            bits_stored=self.bits_stored,
            pixel_representation=self.pixel_representation,
            photometric_interpretation=self.photometric_interpretation,
            planar_configuration=self.planar_configuration,
            number_of_frames=1,
            pixel_keyword=self.pixel_keyword,
        )


def open_part10(data: bytes | bytearray | memoryview) -> PixelData:
    """Locate the pixel data of a complete Part 10 file held in memory (nothing is copied)."""
    view = memoryview(data).cast("B")
    meta_syntax, dataset_bytes = part10.split_transfer_syntax(view)  # the meta group only
    stored = _transfer_syntax(meta_syntax, dataset_bytes)
    base = len(view) - len(dataset_bytes)
    if uids.encoding(stored)[2]:
        try:
            dataset_bytes = memoryview(zlib.decompress(bytes(dataset_bytes), -zlib.MAX_WBITS))
        except zlib.error as exc:
            raise DecodeError(f"deflated dataset does not inflate: {exc}") from exc
        return _parse(
            dataset_bytes, 0, memory_reader(dataset_bytes), stored, str(ExplicitVRLittleEndian)
        )
    return _parse(dataset_bytes, base, memory_reader(view), stored, stored)


def open_at(read: Read, pixel_offset: int) -> PixelData:
    """Locate the pixel data given the value offset the archive recorded at ingest.

    Reads only the `pixel_offset` bytes of header; not for deflated files (whose offset
    the archive does not record - use `open_part10`).
    """
    head = memoryview(read(0, pixel_offset))
    meta_syntax, dataset_bytes = part10.split_transfer_syntax(head)
    stored = _transfer_syntax(meta_syntax, dataset_bytes)
    if uids.encoding(stored)[2]:
        raise DecodeError("a deflated file has no pixel offset; read it whole")
    pixels = _parse(dataset_bytes, len(head) - len(dataset_bytes), read, stored, stored)
    if pixels.offset != pixel_offset:
        raise DecodeError(f"pixel value found at {pixels.offset}, expected {pixel_offset}")
    return pixels


class HeaderCache:
    """The pixel data descriptions of the instances rendered last, by blob key.

    A viewer asks for the same instance again and again (each window change, each
    frame of a multi-frame image, its thumbnail), and each time its header up to the
    pixel data was read and parsed by pydicom: a third of a rendering's time.  A blob
    key names bytes that never change (a new copy of an instance gets a new key), so
    what was parsed stays true.  The cache is bounded by the headers' encoded size (an
    enhanced multi-frame header can hold megabytes of functional groups); the elements
    are all converted before a header is shared, so readers on other threads only read.
    """

    def __init__(self, max_bytes: int = 64 << 20) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, tuple[PixelData, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def open_at(self, key: str, read: Read, pixel_offset: int) -> PixelData:
        """`open_at(read, pixel_offset)`, parsed once per blob key."""
        with self._lock:
            known = self._items.get(key)
            if known is not None:
                self._items.move_to_end(key)
        if known is not None:
            return replace(known[0], read=read)
        pixels = open_at(read, pixel_offset)
        if pixel_offset <= self.max_bytes // 4:
            for _element in pixels.dataset.iterall():  # converts every raw element
                pass
            self._keep(key, pixels, pixel_offset)
        return pixels

    def _keep(self, key: str, pixels: PixelData, size: int) -> None:
        with self._lock:
            if key in self._items:
                return
            self._items[key] = (pixels, size)
            self._bytes += size
            while self._bytes > self.max_bytes:
                _key, (_pixels, dropped) = self._items.popitem(last=False)
                self._bytes -= dropped


def _transfer_syntax(meta_syntax: str | None, dataset_bytes: memoryview) -> str:
    ts = meta_syntax or part10.guess_transfer_syntax(dataset_bytes)
    try:
        uids.encoding(ts)
    except ValueError:
        raise DecodeError(f"unknown transfer syntax {ts}") from None
    return ts


def _parse(dataset_bytes: memoryview, base: int, read: Read, stored: str, ts: str) -> PixelData:
    """Parse the header up to the pixel element, then read that element's header."""
    implicit, little, _deflated = uids.encoding(ts)
    fp = _ViewFile(dataset_bytes)
    try:
        # pydicom annotates the file as BinaryIO; it calls only read, seek and tell.
        ds = read_dataset(cast(BinaryIO, fp), implicit, little, stop_when=_at_pixels)
    except Exception as exc:
        raise DecodeError(f"dataset cannot be parsed: {exc}") from exc
    element = part10.pixel_element(dataset_bytes, fp.tell(), implicit, little)
    if element is None:
        raise NoPixelData("the instance has no pixel data")
    return _describe(
        ds, stored, ts, read, element.tag, element.vr or "", base + element.start, element.length
    )


def _at_pixels(tag: int, vr: str | None, length: int) -> bool:
    return tag in PIXEL_KEYWORDS


def _describe(
    ds: Dataset, stored: str, ts: str, read: Read, tag: int, vr: str, offset: int, length: int
) -> PixelData:
    """Read the Image Pixel module attributes that decide the frame layout."""
    try:
        bits = int(ds.get("BitsAllocated") or 0)
        samples = int(ds.get("SamplesPerPixel") or 1)
        frames = int(ds.get("NumberOfFrames") or 1)
        pixels = PixelData(
            ds,
            stored,
            ts,
            read,
            tag,
            vr,
            offset,
            length,
            rows=int(ds.Rows),
            columns=int(ds.Columns),
            samples_per_pixel=samples,
            bits_allocated=bits,
            bits_stored=int(ds.get("BitsStored") or bits),
            pixel_representation=int(ds.get("PixelRepresentation") or 0),
            photometric_interpretation=str(ds.get("PhotometricInterpretation", "")).strip(),
            planar_configuration=int(ds.get("PlanarConfiguration") or 0) if samples > 1 else 0,
            number_of_frames=max(frames, 1),
        )
    except (AttributeError, TypeError, ValueError) as exc:
        raise DecodeError(f"invalid Image Pixel module: {exc}") from exc
    if bits not in (1, 8, 16, 32, 64) or pixels.rows < 1 or pixels.columns < 1:
        raise DecodeError(
            f"unsupported pixel layout: Bits Allocated {bits}, {pixels.rows}x{pixels.columns}"
        )
    if not vr:
        pixels.vr = part10.default_pixel_vr(tag, bits)
    return pixels


class _ViewFile:
    """The read/seek/tell file interface pydicom's reader needs, over a memoryview.

    io.BytesIO would copy the whole file (pixel data included) just to parse its header.
    """

    def __init__(self, view: memoryview) -> None:
        self.view, self.position = view, 0

    def read(self, size: int = -1) -> bytes:
        end = len(self.view) if size is None or size < 0 else self.position + size
        chunk = bytes(self.view[self.position : end])
        self.position += len(chunk)
        return chunk

    def seek(self, offset: int, whence: int = 0) -> int:
        base = (0, self.position, len(self.view))[whence]
        self.position = max(0, base + offset)
        return self.position

    def tell(self) -> int:
        return self.position
