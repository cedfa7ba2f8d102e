/**
 * DICOM files (PS3.10 7): the 128-byte preamble, "DICM" and the File Meta
 * Information group (always Explicit VR Little Endian), followed by the dataset
 * exactly as it was received.
 */
import { concat } from "./bytes.js";
import { encodeElements, parseDataset } from "./dataset.js";
import { TAGS } from "./dictionary.js";
import { IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME, isImplicitVR } from "./uids.js";

const PREAMBLE_LENGTH = 128;
const MAGIC = [0x44, 0x49, 0x43, 0x4d]; // "DICM"

/** Preamble, magic and File Meta Information for one instance (PS3.10 7.1). */
export function fileMeta({ sopClassUID, sopInstanceUID, transferSyntaxUID, sourceAET = null }) {
  const elements = [
    { tag: TAGS.FileMetaInformationVersion, vr: "OB", value: new Uint8Array([0, 1]) },
    { tag: TAGS.MediaStorageSOPClassUID, vr: "UI", value: sopClassUID },
    { tag: TAGS.MediaStorageSOPInstanceUID, vr: "UI", value: sopInstanceUID },
    { tag: TAGS.TransferSyntaxUID, vr: "UI", value: transferSyntaxUID },
    { tag: TAGS.ImplementationClassUID, vr: "UI", value: IMPLEMENTATION_CLASS_UID },
    { tag: TAGS.ImplementationVersionName, vr: "SH", value: IMPLEMENTATION_VERSION_NAME },
  ];
  if (sourceAET) elements.push({ tag: TAGS.SourceApplicationEntityTitle, vr: "AE", value: sourceAET.trim() });
  const group = encodeElements(elements);
  const length = encodeElements([{ tag: TAGS.FileMetaInformationGroupLength, vr: "UL", value: group.length }]);
  const head = new Uint8Array(PREAMBLE_LENGTH + 4);
  head.set(MAGIC, PREAMBLE_LENGTH);
  return concat([head, length, group]);
}

/** A Part 10 file from a dataset as received on a presentation context. */
export function toPart10(dataset, meta) {
  return concat([fileMeta(meta), dataset]);
}

/**
 * Split a Part 10 file: {meta (Dataset), transferSyntaxUID, datasetOffset, implicit}.
 * Throws when there is no "DICM" or the meta group is unreadable. A meta group without its
 * group length (written by some old tools) ends where group 0002 does.
 */
export function readPart10(bytes) {
  if (!isPart10(bytes)) throw new Error('not a DICOM file (no "DICM" after the 128-byte preamble)');
  const { meta, end } = metaGroup(bytes);
  const transferSyntaxUID = meta.string(TAGS.TransferSyntaxUID);
  if (!transferSyntaxUID) throw new Error("file meta information has no transfer syntax");
  return { meta, transferSyntaxUID, datasetOffset: end, implicit: isImplicitVR(transferSyntaxUID) };
}

/**
 * The instance a Part 10 file holds, from its file meta information:
 * {sopClass, sopInstance, transferSyntax}, or null when the bytes are not a readable Part 10 file.
 */
export function readFileMeta(bytes) {
  if (!isPart10(bytes)) return null;
  try {
    const { meta } = metaGroup(bytes);
    return {
      sopClass: meta.string(TAGS.MediaStorageSOPClassUID),
      sopInstance: meta.string(TAGS.MediaStorageSOPInstanceUID),
      transferSyntax: meta.string(TAGS.TransferSyntaxUID),
    };
  } catch {
    return null;
  }
}

/** The file meta group of Part 10 bytes as a Dataset, and the offset where it ends. */
function metaGroup(bytes) {
  const start = PREAMBLE_LENGTH + 4;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  // (0002,0000) UL, length 4: the group length (PS3.10 7.1), when the writer put it first
  const hasLength =
    bytes.length >= start + 12 && view.getUint32(start, true) === 0x00000002 && view.getUint16(start + 6, true) === 4;
  const end = hasLength ? start + 12 + view.getUint32(start + 8, true) : endOfGroup2(view, start);
  if (end > bytes.length) throw new Error("file meta information is cut short");
  return { meta: parseDataset(bytes, { start, end }), end };
}

function isPart10(bytes) {
  return bytes.length >= PREAMBLE_LENGTH + 4 && MAGIC.every((b, i) => bytes[PREAMBLE_LENGTH + i] === b);
}

const LONG_VRS = new Set(["OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"]);

/** Where group 0002 ends, walking its Explicit VR Little Endian element headers. */
function endOfGroup2(view, start) {
  let pos = start;
  while (pos + 8 <= view.byteLength && view.getUint16(pos, true) === 0x0002) {
    const vr = String.fromCharCode(view.getUint8(pos + 4), view.getUint8(pos + 5));
    if (LONG_VRS.has(vr)) {
      if (pos + 12 > view.byteLength) break;
      pos += 12 + view.getUint32(pos + 8, true);
    } else {
      pos += 8 + view.getUint16(pos + 6, true);
    }
  }
  return pos;
}
