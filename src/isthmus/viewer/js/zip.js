// A streaming ZIP writer (PKWARE APPNOTE 6.3.x): "stored" entries, UTF-8 names, ZIP64 when an
// archive grows past 4 GiB or 65535 entries. Each entry is written as soon as it is added.

const TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/** CRC-32 (ISO 3309) of bytes, continuing from `crc`. */
export function crc32(bytes, crc = 0) {
  let c = (crc ^ 0xffffffff) >>> 0;
  for (let i = 0; i < bytes.length; i++) c = TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

const MAX32 = 0xffffffff;

function dosDateTime(date) {
  const time = (date.getHours() << 11) | (date.getMinutes() << 5) | (date.getSeconds() >> 1);
  const day = ((Math.max(1980, date.getFullYear()) - 1980) << 9) | ((date.getMonth() + 1) << 5) | date.getDate();
  return { time, day };
}

class Bytes {
  constructor(size) {
    this.view = new DataView(new ArrayBuffer(size));
    this.pos = 0;
  }
  u16(v) {
    this.view.setUint16(this.pos, v, true);
    this.pos += 2;
    return this;
  }
  u32(v) {
    this.view.setUint32(this.pos, v >>> 0, true);
    this.pos += 4;
    return this;
  }
  u64(v) {
    this.u32(v % 4294967296);
    return this.u32(Math.floor(v / 4294967296));
  }
  raw(bytes) {
    new Uint8Array(this.view.buffer).set(bytes, this.pos);
    this.pos += bytes.length;
    return this;
  }
  get bytes() {
    return new Uint8Array(this.view.buffer);
  }
}

/**
 * Writes entries to `sink(chunk)` (which may return a promise, e.g. a file stream's write).
 * add() each file, then finish() for the central directory.
 */
export class ZipWriter {
  constructor(sink, now = new Date()) {
    this.sink = sink;
    this.offset = 0;
    this.entries = [];
    this.stamp = dosDateTime(now);
    this.names = new Set();
  }

  async write(bytes) {
    await this.sink(bytes);
    this.offset += bytes.length;
  }

  /** Add one stored file; a repeated name gets a numeric suffix. */
  async add(name, data) {
    name = this.unique(name);
    const nameBytes = new TextEncoder().encode(name);
    const crc = crc32(data);
    const zip64 = data.length >= MAX32 || this.offset >= MAX32;
    const extra = zip64 ? new Bytes(20).u16(0x0001).u16(16).u64(data.length).u64(data.length).bytes : new Uint8Array(0);
    const header = new Bytes(30 + nameBytes.length + extra.length)
      .u32(0x04034b50)
      .u16(zip64 ? 45 : 20)
      .u16(0x0800)
      .u16(0)
      .u16(this.stamp.time)
      .u16(this.stamp.day)
      .u32(crc)
      .u32(zip64 ? MAX32 : data.length)
      .u32(zip64 ? MAX32 : data.length)
      .u16(nameBytes.length)
      .u16(extra.length)
      .raw(nameBytes)
      .raw(extra);
    this.entries.push({ nameBytes, crc, size: data.length, offset: this.offset });
    await this.write(header.bytes);
    await this.write(data);
    return name;
  }

  unique(name) {
    let candidate = name;
    for (let i = 2; this.names.has(candidate); i++) {
      const dot = name.lastIndexOf(".");
      candidate = dot > 0 ? `${name.slice(0, dot)}_${i}${name.slice(dot)}` : `${name}_${i}`;
    }
    this.names.add(candidate);
    return candidate;
  }

  /** Write the central directory and end records; returns the archive's total size. */
  async finish() {
    const start = this.offset;
    for (const e of this.entries) await this.write(this.centralEntry(e));
    const size = this.offset - start;
    const zip64 =
      start >= MAX32 ||
      size >= MAX32 ||
      this.entries.length >= 0xffff ||
      this.entries.some((e) => e.offset >= MAX32 || e.size >= MAX32);
    if (zip64) {
      const recordAt = this.offset;
      await this.write(
        new Bytes(56)
          .u32(0x06064b50)
          .u64(44)
          .u16(45)
          .u16(45)
          .u32(0)
          .u32(0)
          .u64(this.entries.length)
          .u64(this.entries.length)
          .u64(size)
          .u64(start).bytes,
      );
      await this.write(new Bytes(20).u32(0x07064b50).u32(0).u64(recordAt).u32(1).bytes);
    }
    const count = Math.min(this.entries.length, 0xffff);
    await this.write(
      new Bytes(22)
        .u32(0x06054b50)
        .u16(0)
        .u16(0)
        .u16(count)
        .u16(count)
        .u32(Math.min(size, MAX32))
        .u32(Math.min(start, MAX32))
        .u16(0).bytes,
    );
    return this.offset;
  }

  centralEntry(e) {
    const big = e.size >= MAX32 || e.offset >= MAX32;
    const extra = big
      ? new Bytes(28).u16(0x0001).u16(24).u64(e.size).u64(e.size).u64(e.offset).bytes
      : new Uint8Array(0);
    return new Bytes(46 + e.nameBytes.length + extra.length)
      .u32(0x02014b50)
      .u16(big ? 45 : 20)
      .u16(big ? 45 : 20)
      .u16(0x0800)
      .u16(0)
      .u16(this.stamp.time)
      .u16(this.stamp.day)
      .u32(e.crc)
      .u32(big ? MAX32 : e.size)
      .u32(big ? MAX32 : e.size)
      .u16(e.nameBytes.length)
      .u16(extra.length)
      .u16(0)
      .u16(0)
      .u16(0)
      .u32(0)
      .u32(big ? MAX32 : e.offset)
      .raw(e.nameBytes)
      .raw(extra).bytes;
  }
}

/** A file or folder name without characters that file systems refuse. */
export function safeName(text, fallback = "unnamed") {
  const cleaned = String(text ?? "")
    .replace(/[\\/:*?"<>|\p{Cc}]+/gu, "_")
    .replace(/^[.\s]+|[.\s]+$/g, "")
    .slice(0, 80);
  return cleaned || fallback;
}
