/**
 * A minimal dataset codec for Explicit and Implicit VR Little Endian (PS3.5 7.1, 7.5).
 *
 * Enough for DIMSE identifiers (C-FIND/C-MOVE/C-GET keys and results), the header
 * of a received instance (shown in the page, used to build its file meta) and the
 * image pixel module (rendering). Values stay views into the source bytes until
 * asked for; sequences and encapsulated pixel data of undefined length are walked
 * item by item (PS3.5 7.5.2, A.4).
 */
import { ByteReader, ByteWriter, DecodeError, latin1, latin1Bytes } from "./bytes.js";
import { describeTag, lookup, vrOf } from "./dictionary.js";

const LONG_VRS = new Set(["OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"]);
const STRING_VRS = new Set([
  "AE",
  "AS",
  "CS",
  "DA",
  "DS",
  "DT",
  "IS",
  "LO",
  "LT",
  "PN",
  "SH",
  "ST",
  "TM",
  "UC",
  "UI",
  "UR",
  "UT",
]);
const ALL_VRS = new Set([...LONG_VRS, ...STRING_VRS, "AT", "FD", "FL", "SL", "SS", "UL", "US"]);
const UNDEFINED_LENGTH = 0xffffffff;
const ITEM = 0xfffee000;
const ITEM_DELIMITATION = 0xfffee00d;
const SEQUENCE_DELIMITATION = 0xfffee0dd;
export const PIXEL_DATA = 0x7fe00010;

const utf8 = new TextDecoder("utf-8");

/** Parsed elements of one dataset (or sequence item), values decoded on demand. */
export class Dataset {
  constructor(bytes, elements, charset = null) {
    this.bytes = bytes;
    this.elements = elements; // Map tag → {tag, vr, offset, length, items?, fragments?}
    this.charset = charset;
    /** Offset just past the last element parsed (where parsing stopped, if it did). */
    this.end = 0;
  }

  has(tag) {
    return this.elements.has(tag);
  }

  get(tag) {
    return this.elements.get(tag);
  }

  /** The value bytes of an element (a view), or null. */
  raw(tag) {
    const el = this.elements.get(tag);
    if (!el || el.length === UNDEFINED_LENGTH) return null;
    return this.bytes.subarray(el.offset, el.offset + el.length);
  }

  /** The whole value of a string element with padding removed, or '' when absent. */
  string(tag) {
    const value = this.raw(tag);
    if (!value) return "";
    const text = this.isUTF8(tag) ? utf8.decode(value) : latin1(value);
    return text.replace(/[\0 ]+$/, "").replace(/^ +/, "");
  }

  /** The values of a multi-valued string element. */
  strings(tag) {
    const text = this.string(tag);
    return text === "" ? [] : text.split("\\").map((v) => v.trim());
  }

  /** Numeric values of binary (US, UL, SS, SL, FL, FD) or text (IS, DS) elements. */
  numbers(tag) {
    const el = this.elements.get(tag);
    if (!el) return [];
    const value = this.raw(tag);
    const view = new DataView(value.buffer, value.byteOffset, value.byteLength);
    const read = {
      US: [2, (o) => view.getUint16(o, true)],
      SS: [2, (o) => view.getInt16(o, true)],
      UL: [4, (o) => view.getUint32(o, true)],
      SL: [4, (o) => view.getInt32(o, true)],
      FL: [4, (o) => view.getFloat32(o, true)],
      FD: [8, (o) => view.getFloat64(o, true)],
    }[el.vr];
    if (read) {
      const out = [];
      for (let o = 0; o + read[0] <= value.length; o += read[0]) out.push(read[1](o));
      return out;
    }
    return this.strings(tag)
      .filter((v) => v !== "")
      .map(Number);
  }

  number(tag, fallback = null) {
    const values = this.numbers(tag);
    return values.length ? values[0] : fallback;
  }

  /** Items of a sequence element, each a Dataset. */
  items(tag) {
    const el = this.elements.get(tag);
    return el?.items || [];
  }

  isUTF8(tag) {
    const vr = this.elements.get(tag)?.vr;
    return this.charset === "utf-8" && ["PN", "LO", "SH", "LT", "ST", "UT", "UC"].includes(vr);
  }

  /** A plain object of keyword (or tag hex) → value(s), for display and tests. */
  toObject() {
    const out = {};
    for (const [tag, el] of this.elements) {
      const name = describeTag(tag)?.keyword || tag.toString(16).toUpperCase().padStart(8, "0");
      if (el.vr === "SQ") out[name] = this.items(tag).map((item) => item.toObject());
      else if (STRING_VRS.has(el.vr) && !["DS", "IS"].includes(el.vr)) {
        const values = this.strings(tag);
        out[name] = values.length <= 1 ? (values[0] ?? "") : values;
      } else if (["US", "UL", "SS", "SL", "FL", "FD", "DS", "IS"].includes(el.vr)) {
        const values = this.numbers(tag);
        out[name] = values.length <= 1 ? (values[0] ?? null) : values;
      } else out[name] = { vr: el.vr, length: el.length };
    }
    return out;
  }
}

function readTag(r) {
  const group = r.u16le();
  const element = r.u16le();
  return ((group << 16) | element) >>> 0;
}

function readHeader(r, implicit) {
  const tag = readTag(r);
  if (tag >>> 16 === 0xfffe) return { tag, vr: null, length: r.u32le() };
  if (implicit) {
    const length = r.u32le();
    let vr = vrOf(tag);
    // PS3.5 6.2.2 note: unknown VR of undefined length in implicit VR is a sequence.
    if (vr === "UN" && length === UNDEFINED_LENGTH) vr = "SQ";
    return { tag, vr, length };
  }
  const vr = String.fromCharCode(r.u8(), r.u8());
  if (!ALL_VRS.has(vr)) throw new DecodeError(`element ${tag.toString(16)} has an invalid VR ${JSON.stringify(vr)}`);
  if (LONG_VRS.has(vr)) {
    r.skip(2);
    return { tag, vr, length: r.u32le() };
  }
  return { tag, vr, length: r.u16le() };
}

/** Parse sequence items into Datasets; returns them and leaves `r` after the sequence. */
function parseItems(r, length, implicit, charset) {
  const items = [];
  const end = length === UNDEFINED_LENGTH ? r.end : r.offset + length;
  while (r.offset < end) {
    const tag = readTag(r);
    const itemLength = r.u32le();
    if (tag === SEQUENCE_DELIMITATION) return items;
    if (tag !== ITEM) throw new DecodeError(`expected a sequence item, found ${tag.toString(16)}`);
    if (itemLength === UNDEFINED_LENGTH) {
      items.push(parseInto(r, implicit, r.end, null, charset, true));
    } else {
      r.need(itemLength, "sequence item");
      const itemEnd = r.offset + itemLength;
      items.push(parseInto(r, implicit, itemEnd, null, charset, false));
      r.offset = itemEnd;
    }
  }
  if (length === UNDEFINED_LENGTH) throw new DecodeError("sequence without a sequence delimitation item");
  return items;
}

/** Skip the fragments of encapsulated pixel data (PS3.5 A.4), recording them. */
function skipFragments(r) {
  const fragments = [];
  for (;;) {
    const tag = readTag(r);
    const length = r.u32le();
    if (tag === SEQUENCE_DELIMITATION) return fragments;
    if (tag !== ITEM) throw new DecodeError(`expected a pixel data fragment, found ${tag.toString(16)}`);
    r.need(length, "pixel data fragment");
    fragments.push({ offset: r.offset, length });
    r.offset += length;
  }
}

function parseInto(r, implicit, end, stopAt, charset, untilDelimiter) {
  const elements = new Map();
  const ds = new Dataset(r.bytes, elements, charset);
  while (r.offset < end) {
    const start = r.offset;
    if (stopAt !== null) {
      r.need(4, "tag");
      const peek = ((r.view.getUint16(r.offset, true) << 16) | r.view.getUint16(r.offset + 2, true)) >>> 0;
      if (peek >= stopAt) break;
    }
    const el = readHeader(r, implicit);
    if (el.tag === ITEM_DELIMITATION) {
      if (!untilDelimiter) throw new DecodeError("item delimitation item outside an item of undefined length");
      ds.end = r.offset;
      return ds;
    }
    el.offset = r.offset;
    if (el.vr === "SQ" || (el.vr === "UN" && el.length === UNDEFINED_LENGTH)) {
      // An explicit-VR UN of undefined length holds an implicit VR sequence (PS3.5 6.2.2).
      el.items = parseItems(r, el.length, implicit || el.vr === "UN", charset);
      el.vr = "SQ";
    } else if (el.length === UNDEFINED_LENGTH) {
      if (el.tag !== PIXEL_DATA) throw new DecodeError(`element ${el.tag.toString(16)} has undefined length`);
      el.fragments = skipFragments(r);
    } else {
      r.need(el.length, `value of ${el.tag.toString(16)}`);
      r.offset += el.length;
    }
    el.start = start;
    elements.set(el.tag, el);
    if (el.tag === 0x00080005) charset = ds.string(el.tag).includes("ISO_IR 192") ? "utf-8" : null;
    ds.charset = charset;
  }
  if (untilDelimiter) throw new DecodeError("item of undefined length without an item delimitation item");
  ds.end = r.offset;
  return ds;
}

/**
 * Parse a little endian dataset. Options: implicit (Implicit VR), start/end
 * offsets, stopAt (a tag: stop before the first element at or past it, e.g.
 * PIXEL_DATA to read a header only).
 */
export function parseDataset(bytes, { implicit = false, start = 0, end = bytes.length, stopAt = null } = {}) {
  const r = new ByteReader(bytes, start, end);
  return parseInto(r, implicit, end, stopAt, null, false);
}

// ---------------------------------------------------------------- encoding

const UINT = { US: 2, UL: 4, SS: 2, SL: 4, FL: 4, FD: 8 };
const textEncoder = new TextEncoder();

function valueBytes(vr, value) {
  if (value === null || value === undefined) return new Uint8Array(0);
  if (value instanceof Uint8Array) return value;
  if (vr === "SQ") throw new TypeError("sequence values are encoded by encodeElements");
  if (UINT[vr]) {
    const list = Array.isArray(value) ? value : [value];
    const size = UINT[vr];
    const out = new Uint8Array(list.length * size);
    const view = new DataView(out.buffer);
    list.forEach((v, i) => {
      const o = i * size;
      ({
        US: () => view.setUint16(o, v, true),
        UL: () => view.setUint32(o, v, true),
        SS: () => view.setInt16(o, v, true),
        SL: () => view.setInt32(o, v, true),
        FL: () => view.setFloat32(o, v, true),
        FD: () => view.setFloat64(o, v, true),
      })[vr]();
    });
    return out;
  }
  if (vr === "AT") {
    const list = Array.isArray(value) ? value : [value];
    const w = new ByteWriter(list.length * 4);
    for (const t of list) w.u16le(t >>> 16).u16le(t & 0xffff);
    return w.toBytes();
  }
  const text = Array.isArray(value) ? value.map(String).join("\\") : String(value);
  // ASCII as is; anything else as UTF-8 (elementsFromKeywords then declares ISO_IR 192).
  return /^\p{ASCII}*$/u.test(text) ? latin1Bytes(text) : textEncoder.encode(text);
}

function writeElement(w, tag, vr, data, implicit) {
  const padded = data.length % 2 === 1;
  const length = data.length + (padded ? 1 : 0);
  w.u16le(tag >>> 16).u16le(tag & 0xffff);
  if (implicit) w.u32le(length);
  else if (LONG_VRS.has(vr)) w.u8(vr.charCodeAt(0)).u8(vr.charCodeAt(1)).u16le(0).u32le(length);
  else {
    if (length > 0xffff) throw new RangeError(`value of ${tag.toString(16)} is too long for VR ${vr}`);
    w.u8(vr.charCodeAt(0)).u8(vr.charCodeAt(1)).u16le(length);
  }
  w.bytes(data);
  if (padded) w.u8(vr === "UI" || vr === "OB" || vr === "UN" ? 0 : 0x20);
}

/**
 * Encode elements [{tag, vr, value}] (any order) as a little endian dataset.
 * A sequence value is an array of items, each itself an array of elements.
 */
export function encodeElements(elements, { implicit = false } = {}) {
  const sorted = [...elements].sort((a, b) => a.tag - b.tag);
  const w = new ByteWriter(256);
  for (const el of sorted) {
    if (el.vr === "SQ") {
      const items = (el.value || []).map((item) => encodeElements(item, { implicit }));
      const body = new ByteWriter(64);
      for (const item of items) body.u16le(0xfffe).u16le(0xe000).u32le(item.length).bytes(item);
      writeElement(w, el.tag, "SQ", body.toBytes(), implicit);
    } else {
      writeElement(w, el.tag, el.vr, valueBytes(el.vr, el.value), implicit);
    }
  }
  return w.toBytes();
}

/**
 * Elements from an object of keyword → value, e.g. a C-FIND identifier
 * {QueryRetrieveLevel: 'STUDY', PatientName: 'DOE*', StudyDate: '20240101-', StudyInstanceUID: ''}.
 * Adds SpecificCharacterSet ISO_IR 192 when a value is not ASCII.
 */
export function elementsFromKeywords(keys) {
  const elements = [];
  let needsUTF8 = false;
  for (const [keyword, value] of Object.entries(keys)) {
    const [tag, vr] = lookup(keyword);
    if (vr === "SQ") {
      elements.push({ tag, vr, value: (value || []).map((item) => elementsFromKeywords(item)) });
      continue;
    }
    const text = Array.isArray(value) ? value.join("\\") : String(value ?? "");
    if (/[^\p{ASCII}]/u.test(text)) needsUTF8 = true;
    elements.push({ tag, vr, value: value ?? "" });
  }
  if (needsUTF8 && !("SpecificCharacterSet" in keys)) elements.push({ tag: 0x00080005, vr: "CS", value: "ISO_IR 192" });
  return elements;
}

/** Encode an identifier from keywords in the given transfer syntax encoding. */
export function encodeIdentifier(keys, { implicit = false } = {}) {
  return encodeElements(elementsFromKeywords(keys), { implicit });
}
