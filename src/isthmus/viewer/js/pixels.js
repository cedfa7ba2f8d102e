// Uncompressed frame bytes → stored pixel values (typed arrays), PS3.5 8.1.1 and PS3.3 C.7.6.3.
// Little Endian byte order (what WADO-RS /frames returns as application/octet-stream).

import { frameBytes } from "./imageinfo.js";

/**
 * Stored values of a monochrome frame, with Bits Stored masking, High Bit shift and sign
 * extension for Pixel Representation 1.
 * @returns {{values: Int8Array|Uint8Array|Int16Array|Uint16Array|Int32Array|Uint32Array, min: number, max: number}}
 */
export function storedValues(bytes, info) {
  const count = info.rows * info.columns;
  const needed = frameBytes(info);
  if (bytes.byteLength < needed) {
    throw new Error(`frame has ${bytes.byteLength} bytes, ${needed} expected`);
  }
  const signed = info.pixelRepresentation === 1;
  const bits = info.bitsStored;
  const shift = info.highBit - bits + 1;
  let values;
  if (info.bitsAllocated === 1) {
    values = unpackBits(bytes, count);
  } else if (info.bitsAllocated === 8) {
    const raw = aligned(bytes, 1);
    values = masked(new Uint8Array(raw.buffer, raw.byteOffset, count), bits, shift, signed, 8);
  } else if (info.bitsAllocated === 16) {
    const raw = aligned(bytes, 2);
    values = masked(new Uint16Array(raw.buffer, raw.byteOffset, count), bits, shift, signed, 16);
  } else if (info.bitsAllocated === 32) {
    const raw = aligned(bytes, 4);
    values = masked(new Uint32Array(raw.buffer, raw.byteOffset, count), bits, shift, signed, 32);
  } else {
    throw new Error(`Bits Allocated ${info.bitsAllocated} is not supported`);
  }
  const [min, max] = extent(values);
  return { values, min, max };
}

/** The bytes, copied when their offset does not suit a typed array of this element size. */
function aligned(bytes, size) {
  return bytes.byteOffset % size === 0 ? bytes : bytes.slice();
}

/** Extract Bits Stored bits below High Bit; sign-extend when signed. */
function masked(raw, bits, shift, signed, allocated) {
  const Signed = allocated === 8 ? Int8Array : allocated === 16 ? Int16Array : Int32Array;
  const view = signed ? new Signed(raw.buffer, raw.byteOffset, raw.length) : raw;
  if (bits === allocated && shift === 0) return view;
  if (shift === 0 && inRange(view, signed ? -(2 ** (bits - 1)) : 0, signed ? 2 ** (bits - 1) - 1 : 2 ** bits - 1)) {
    return view; // no bits above Bits Stored are set: the values are the stored values already
  }
  const Out =
    allocated === 32
      ? signed
        ? Int32Array
        : Uint32Array
      : allocated === 16
        ? signed
          ? Int16Array
          : Uint16Array
        : signed
          ? Int8Array
          : Uint8Array;
  const out = new Out(raw.length);
  const mask = bits >= 32 ? 0xffffffff : 2 ** bits - 1;
  const sign = 2 ** (bits - 1);
  const span = 2 ** bits;
  for (let i = 0; i < raw.length; i++) {
    let v = (raw[i] >>> shift) & mask;
    if (v < 0) v += 4294967296; // >>> 0 for 32-bit masks
    if (signed && v >= sign) v -= span;
    out[i] = v;
  }
  return out;
}

function inRange(values, lo, hi) {
  for (let i = 0; i < values.length; i++) if (values[i] < lo || values[i] > hi) return false;
  return true;
}

/** 1-bit pixels, least significant bit first (PS3.5 8.1.1, Figure D-1). */
function unpackBits(bytes, count) {
  const out = new Uint8Array(count);
  for (let i = 0; i < count; i++) out[i] = (bytes[i >> 3] >> (i & 7)) & 1;
  return out;
}

/** Minimum and maximum of an array of numbers. */
export function extent(values) {
  let min = Infinity;
  let max = -Infinity;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (v < min) min = v;
    if (v > max) max = v;
  }
  return values.length ? [min, max] : [0, 0];
}

/**
 * A color frame as interleaved 8-bit RGB: Planar Configuration 0 or 1, RGB, YBR_FULL or
 * uncompressed YBR_FULL_422 (PS3.3 C.7.6.3.1.2), 8 or 16 bits per sample.
 */
export function rgbValues(bytes, info) {
  const count = info.rows * info.columns;
  const needed = frameBytes(info);
  if (bytes.byteLength < needed) throw new Error(`frame has ${bytes.byteLength} bytes, ${needed} expected`);
  const samples = toEightBit(bytes, info, info.photometric === "YBR_FULL_422" ? count * 2 : count * 3);
  let rgb;
  if (info.photometric === "YBR_FULL_422") {
    rgb = ybr422ToRgb(samples, count);
  } else {
    rgb = info.planarConfiguration === 1 ? interleave(samples, count) : samples.slice(0, count * 3);
    if (info.photometric === "YBR_FULL") ybrToRgbInPlace(rgb);
  }
  return { rgb };
}

function toEightBit(bytes, info, n) {
  if (info.bitsAllocated === 8) return bytes.subarray(0, n);
  const raw = aligned(bytes, 2);
  const words = new Uint16Array(raw.buffer, raw.byteOffset, n);
  const shift = Math.max(0, info.bitsStored - 8);
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = words[i] >> shift;
  return out;
}

function interleave(planes, count) {
  const out = new Uint8Array(count * 3);
  for (let i = 0; i < count; i++) {
    out[3 * i] = planes[i];
    out[3 * i + 1] = planes[count + i];
    out[3 * i + 2] = planes[2 * count + i];
  }
  return out;
}

const clamp8 = (v) => (v < 0 ? 0 : v > 255 ? 255 : Math.round(v));

/** YCbCr (full range) → RGB, PS3.3 C.7.6.3.1.2. */
export function ybrToRgbInPlace(px) {
  for (let i = 0; i < px.length; i += 3) {
    const y = px[i];
    const cb = px[i + 1] - 128;
    const cr = px[i + 2] - 128;
    px[i] = clamp8(y + 1.402 * cr);
    px[i + 1] = clamp8(y - 0.344136 * cb - 0.714136 * cr);
    px[i + 2] = clamp8(y + 1.772 * cb);
  }
  return px;
}

function ybr422ToRgb(samples, count) {
  const out = new Uint8Array(count * 3);
  for (let p = 0, s = 0; p < count; p += 2, s += 4) {
    const cb = samples[s + 2];
    const cr = samples[s + 3];
    for (let k = 0; k < 2 && p + k < count; k++) {
      out.set([samples[s + k], cb, cr], 3 * (p + k));
    }
  }
  return ybrToRgbInPlace(out);
}
