/**
 * Byte-level helpers: a growable writer and a bounds-checked reader over Uint8Array.
 *
 * PDUs are big endian (PS3.8 9.3.1); DIMSE command sets and the datasets this
 * library handles are little endian (PS3.7 6.3.1, PS3.5 7.3). Both share these
 * two classes so that every length check lives in one place.
 */

/** Bytes that do not decode as what they claim to be. */
export class DecodeError extends Error {
  constructor(message) {
    super(message);
    this.name = "DecodeError";
  }
}

const textDecoder = new TextDecoder("latin1");

/** Decode bytes as ISO 8859-1 (a superset of the ASCII that PDUs and UIDs use). */
export function latin1(bytes) {
  return textDecoder.decode(bytes);
}

/** Encode an ASCII/latin-1 string; throws on characters outside latin-1. */
export function latin1Bytes(text) {
  const out = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i += 1) {
    const code = text.charCodeAt(i);
    if (code > 0xff) throw new RangeError(`character ${JSON.stringify(text[i])} is not latin-1`);
    out[i] = code;
  }
  return out;
}

/** Concatenate byte arrays into one new Uint8Array. */
export function concat(chunks) {
  let total = 0;
  for (const c of chunks) total += c.length;
  const out = new Uint8Array(total);
  let offset = 0;
  for (const c of chunks) {
    out.set(c, offset);
    offset += c.length;
  }
  return out;
}

/** View any binary value (ArrayBuffer, typed array, Node Buffer) as a Uint8Array. */
export function asBytes(value) {
  if (value instanceof Uint8Array) return value;
  if (value instanceof ArrayBuffer) return new Uint8Array(value);
  if (ArrayBuffer.isView(value)) return new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
  throw new TypeError("expected binary data");
}

export function toHex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

export function fromHex(hex) {
  const clean = hex.replace(/\s+/g, "");
  const out = new Uint8Array(clean.length / 2);
  for (let i = 0; i < out.length; i += 1) out[i] = parseInt(clean.slice(2 * i, 2 * i + 2), 16);
  return out;
}

/** An append-only byte buffer that grows as needed. */
export class ByteWriter {
  constructor(capacity = 256) {
    this.buf = new Uint8Array(capacity);
    this.view = new DataView(this.buf.buffer);
    this.length = 0;
  }

  reserve(n) {
    if (this.length + n <= this.buf.length) return;
    let capacity = this.buf.length * 2;
    while (capacity < this.length + n) capacity *= 2;
    const grown = new Uint8Array(capacity);
    grown.set(this.buf.subarray(0, this.length));
    this.buf = grown;
    this.view = new DataView(grown.buffer);
  }

  u8(v) {
    this.reserve(1);
    this.buf[this.length] = v;
    this.length += 1;
    return this;
  }
  u16be(v) {
    this.reserve(2);
    this.view.setUint16(this.length, v, false);
    this.length += 2;
    return this;
  }
  u32be(v) {
    this.reserve(4);
    this.view.setUint32(this.length, v, false);
    this.length += 4;
    return this;
  }
  u16le(v) {
    this.reserve(2);
    this.view.setUint16(this.length, v, true);
    this.length += 2;
    return this;
  }
  u32le(v) {
    this.reserve(4);
    this.view.setUint32(this.length, v, true);
    this.length += 4;
    return this;
  }

  bytes(data) {
    this.reserve(data.length);
    this.buf.set(data, this.length);
    this.length += data.length;
    return this;
  }

  zeros(n) {
    this.reserve(n);
    this.buf.fill(0, this.length, this.length + n);
    this.length += n;
    return this;
  }

  /** Write `text` padded with `pad` (default space) to exactly `size` bytes. */
  fixed(text, size, pad = 0x20) {
    const data = latin1Bytes(text);
    if (data.length > size) throw new RangeError(`${JSON.stringify(text)} is longer than ${size} bytes`);
    this.bytes(data);
    this.reserve(size - data.length);
    this.buf.fill(pad, this.length, this.length + size - data.length);
    this.length += size - data.length;
    return this;
  }

  setU16be(offset, v) {
    this.view.setUint16(offset, v, false);
  }
  setU32be(offset, v) {
    this.view.setUint32(offset, v, false);
  }
  setU32le(offset, v) {
    this.view.setUint32(offset, v, true);
  }

  /** The written bytes (a copy, detached from the growing buffer). */
  toBytes() {
    return this.buf.slice(0, this.length);
  }
}

/** Sequential reader; every read checks bounds and throws DecodeError past `end`. */
export class ByteReader {
  constructor(bytes, offset = 0, end = bytes.length) {
    this.bytes = bytes;
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.offset = offset;
    this.end = end;
  }

  get remaining() {
    return this.end - this.offset;
  }

  need(n, what = "value") {
    if (n < 0 || this.offset + n > this.end) {
      throw new DecodeError(`${what} of ${n} bytes at offset ${this.offset} runs past the end (${this.end})`);
    }
  }

  u8() {
    this.need(1);
    const v = this.bytes[this.offset];
    this.offset += 1;
    return v;
  }
  u16be() {
    this.need(2);
    const v = this.view.getUint16(this.offset, false);
    this.offset += 2;
    return v;
  }
  u32be() {
    this.need(4);
    const v = this.view.getUint32(this.offset, false);
    this.offset += 4;
    return v;
  }
  u16le() {
    this.need(2);
    const v = this.view.getUint16(this.offset, true);
    this.offset += 2;
    return v;
  }
  u32le() {
    this.need(4);
    const v = this.view.getUint32(this.offset, true);
    this.offset += 4;
    return v;
  }

  /** A view (no copy) of the next n bytes. */
  take(n, what) {
    this.need(n, what);
    const out = this.bytes.subarray(this.offset, this.offset + n);
    this.offset += n;
    return out;
  }

  skip(n, what) {
    this.need(n, what);
    this.offset += n;
  }
}
