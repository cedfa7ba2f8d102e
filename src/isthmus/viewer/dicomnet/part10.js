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
 * Split a Part 10 file: {meta (Dataset), transferSyntaxUID, datasetOffset}.
 * Throws when there is no "DICM" or the meta group is unreadable.
 */
export function readPart10(bytes) {
  if (bytes.length < PREAMBLE_LENGTH + 4 || MAGIC.some((b, i) => bytes[PREAMBLE_LENGTH + i] !== b)) {
    throw new Error('not a DICOM file (no "DICM" after the 128-byte preamble)');
  }
  const start = PREAMBLE_LENGTH + 4;
  const head = parseDataset(bytes, { start, end: Math.min(bytes.length, start + 12) });
  const groupLength = head.number(TAGS.FileMetaInformationGroupLength);
  if (groupLength === null) throw new Error("file meta information has no group length");
  const end = start + 12 + groupLength;
  const meta = parseDataset(bytes, { start, end });
  const transferSyntaxUID = meta.string(TAGS.TransferSyntaxUID);
  if (!transferSyntaxUID) throw new Error("file meta information has no transfer syntax");
  return { meta, transferSyntaxUID, datasetOffset: end, implicit: isImplicitVR(transferSyntaxUID) };
}
