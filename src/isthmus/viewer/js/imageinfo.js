// What the pixel pipeline needs to know about an image, read once from its DICOM JSON metadata.
// PS3.3 C.7.6.3 (Image Pixel), C.11.1 (Modality LUT), C.11.2 (VOI LUT).

import { items, num, nums, TAG, text, value, values } from "./dicomjson.js";

/**
 * The image's pixel description and its grayscale transforms.
 * @param {object} meta one instance's DICOM JSON
 */
export function imageInfo(meta) {
  const bitsAllocated = num(meta, TAG.BitsAllocated, 16);
  const bitsStored = num(meta, TAG.BitsStored, bitsAllocated);
  const spacing = nums(meta, TAG.PixelSpacing);
  const imagerSpacing = nums(meta, TAG.ImagerPixelSpacing);
  return {
    rows: num(meta, TAG.Rows, 0),
    columns: num(meta, TAG.Columns, 0),
    samplesPerPixel: num(meta, TAG.SamplesPerPixel, 1),
    photometric: text(meta, TAG.PhotometricInterpretation, "MONOCHROME2").trim().toUpperCase(),
    planarConfiguration: num(meta, TAG.PlanarConfiguration, 0),
    bitsAllocated,
    bitsStored,
    highBit: num(meta, TAG.HighBit, bitsStored - 1),
    pixelRepresentation: num(meta, TAG.PixelRepresentation, 0),
    numberOfFrames: Math.max(1, num(meta, TAG.NumberOfFrames, 1)),
    slope: num(meta, TAG.RescaleSlope, 1) || 1,
    intercept: num(meta, TAG.RescaleIntercept, 0),
    modalityLut: lutFrom(items(meta, TAG.ModalityLUTSequence)[0], num(meta, TAG.PixelRepresentation, 0)),
    windows: windowsOf(meta),
    voiFunction: text(meta, TAG.VOILUTFunction, "LINEAR").trim().toUpperCase() || "LINEAR",
    voiLuts: items(meta, TAG.VOILUTSequence)
      .map((item) => lutFrom(item, 0))
      .filter(Boolean),
    presentationInverse: text(meta, TAG.PresentationLUTShape).trim().toUpperCase() === "INVERSE",
    pixelSpacing: spacing.length >= 2 ? spacing.slice(0, 2) : null,
    spacingSource: spacing.length >= 2 ? "PixelSpacing" : imagerSpacing.length >= 2 ? "ImagerPixelSpacing" : null,
    measureSpacing:
      spacing.length >= 2 ? spacing.slice(0, 2) : imagerSpacing.length >= 2 ? imagerSpacing.slice(0, 2) : null,
    frameTimeMs: num(meta, TAG.FrameTime, 0),
    frameRate: num(meta, TAG.RecommendedDisplayFrameRate, 0) || num(meta, TAG.CineRate, 0),
  };
}

/** Window Center/Width pairs (PS3.3 C.11.2.1.2), with their explanations. */
function windowsOf(meta) {
  const centers = nums(meta, TAG.WindowCenter);
  const widths = nums(meta, TAG.WindowWidth);
  const names = values(meta, TAG.WindowCenterWidthExplanation);
  const out = [];
  for (let i = 0; i < Math.min(centers.length, widths.length); i++) {
    if (widths[i] > 0) out.push({ center: centers[i], width: widths[i], explanation: String(names[i] ?? "") });
  }
  return out;
}

/**
 * A LUT from a Modality or VOI LUT Sequence item: descriptor [entries, first mapped, bits]
 * (PS3.3 C.11.1.1.1: 0 entries means 65536; first mapped is signed when pixels are signed).
 * Returns null when the LUT data is not available inline (a BulkDataURI the loader has not
 * fetched yet is marked `pending`).
 */
export function lutFrom(item, pixelRepresentation) {
  if (!item) return null;
  const d = values(item, TAG.LUTDescriptor).map(Number);
  if (d.length < 3) return null;
  const entries = d[0] === 0 ? 65536 : d[0];
  let first = d[1];
  if (pixelRepresentation === 1 && first > 32767) first -= 65536;
  const bits = d[2];
  const element = item[TAG.LUTData];
  const data = lutData(element, entries, bits);
  if (!data) return element?.BulkDataURI ? { pending: element.BulkDataURI, entries, first, bits } : null;
  return { entries, first, bits, data, explanation: String(value(item, TAG.LUTExplanation, 0, "")) };
}

/** LUT Data as numbers, from Value, InlineBinary (base64) or fetched bulk data bytes. */
export function lutData(element, entries, bits) {
  if (!element) return null;
  if (Array.isArray(element.Value) && element.Value.length) return Uint16Array.from(element.Value);
  let bytes = element.bytes ?? null;
  if (!bytes && element.InlineBinary) bytes = base64Bytes(element.InlineBinary);
  if (!bytes) return null;
  if (bits <= 8 && bytes.length === entries) return Uint16Array.from(bytes);
  const count = Math.min(entries, bytes.length >> 1);
  const out = new Uint16Array(count);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let i = 0; i < count; i++) out[i] = view.getUint16(2 * i, true);
  return out;
}

function base64Bytes(b64) {
  const bin = atob(b64);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

/** True when the browser pipeline can show this image from uncompressed frame bytes. */
export function decodable(info) {
  const mono = info.photometric === "MONOCHROME1" || info.photometric === "MONOCHROME2";
  const color =
    ["RGB", "YBR_FULL", "YBR_FULL_422", "YBR_RCT", "YBR_ICT", "YBR_PARTIAL_420", "YBR_PARTIAL_422"].includes(
      info.photometric,
    ) && info.samplesPerPixel === 3;
  const bitsOk = [1, 8, 16, 32].includes(info.bitsAllocated) && info.bitsStored <= info.bitsAllocated;
  return (
    info.rows > 0 &&
    info.columns > 0 &&
    bitsOk &&
    ((mono && info.samplesPerPixel === 1) || color) &&
    !info.modalityLut?.pending
  );
}

/** Bytes of one uncompressed frame (PS3.5 8.1.1; 1-bit frames are packed). */
export function frameBytes(info) {
  const pixels = info.rows * info.columns;
  if (info.photometric === "YBR_FULL_422") return pixels * 2 * (info.bitsAllocated / 8);
  if (info.bitsAllocated === 1) return Math.ceil((pixels * info.samplesPerPixel) / 8);
  return pixels * info.samplesPerPixel * (info.bitsAllocated / 8);
}
