/**
 * The DICOM data dictionary (PS3.6): tag, VR and keyword of every attribute, generated from
 * pydicom's dictionary by scripts/make_dictionary.py into dictionary-data.js (compact format
 * described there). One dictionary for the network library, the node page and the viewer.
 */
import { DOUBLE, SECOND, SINGLE, TABLE, WORDS } from "./dictionary-data.js";

/** tag (number) → {keyword, vr}; repeating groups (50xx, 60xx) are stored at group xx00. */
const byTag = new Map();
/** keyword → tag for every attribute, e.g. TAGS.PatientName === 0x00100010. */
export const TAGS = {};
/** groups whose low byte repeats (curves 50xx, overlays 60xx), as group & 0xff00 */
const repeating = new Set();

(function load() {
  const words = WORDS.split(" ");
  const single = new Map([...SINGLE].map((ch, i) => [ch, words[i]]));
  const row = new Map([...DOUBLE].map((ch, i) => [ch, SINGLE.length + i * SECOND.length]));
  const inClass = (chars) => chars.replace(/[-\\\]^]/g, "\\$&");
  const code = new RegExp(`[${inClass(SINGLE)}]|[${inClass(DOUBLE)}].`, "g");
  // One pass of the regular expression engine over the whole table spells out every keyword.
  const text = TABLE.replace(code, (c) => single.get(c) ?? words[row.get(c[0]) + SECOND.indexOf(c[1])]);
  let group = 0;
  for (const line of text.split("\n")) {
    if (line.length === 4) {
      const repeats = line.endsWith("xx");
      group = Number.parseInt(repeats ? `${line.slice(0, 2)}00` : line, 16);
      if (repeats) repeating.add(group);
      continue;
    }
    const tag = ((group << 16) | Number.parseInt(line.slice(0, 4), 16)) >>> 0;
    const vr = line.slice(4, 6);
    const keyword = line.slice(6);
    byTag.set(tag, { keyword, vr: vr === "NO" ? null : vr });
    TAGS[keyword] = tag;
  }
  Object.freeze(TAGS);
})();

/** [tag, VR] of a keyword; throws for a keyword the dictionary does not have. */
export function lookup(keyword) {
  const tag = Object.hasOwn(TAGS, keyword) ? TAGS[keyword] : undefined;
  if (tag === undefined) throw new RangeError(`unknown attribute keyword ${JSON.stringify(keyword)}`);
  return [tag, byTag.get(tag).vr];
}

/** Keyword and VR (null for items and delimiters) of a tag, or null when unknown. */
export function describeTag(tag) {
  const known = byTag.get(tag);
  if (known) return known;
  const group = tag >>> 16;
  if (repeating.has(group & 0xff00) && group % 2 === 0)
    return byTag.get(((group & 0xff00) << 16) | (tag & 0xffff)) || null;
  return null;
}

/** The VR of a tag for Implicit VR decoding; group lengths are UL, unknown tags UN. */
export function vrOf(tag) {
  const entry = describeTag(tag);
  if (entry?.vr) return entry.vr;
  if ((tag & 0xffff) === 0) return "UL";
  return "UN";
}

/**
 * The keyword of a tag written as in the DICOM JSON model ("00100010"); group lengths and
 * private tags, which have none, get a description instead.
 */
export function keyword(tag) {
  const number = Number.parseInt(tag, 16);
  const known = describeTag(number)?.keyword;
  if (known) return known;
  if ((number & 0xffff) === 0) return "GroupLength";
  return (number >>> 16) % 2 === 1 ? "(private)" : "";
}

export function tagString(tag) {
  const hex = tag.toString(16).toUpperCase().padStart(8, "0");
  return `(${hex.slice(0, 4)},${hex.slice(4)})`;
}
