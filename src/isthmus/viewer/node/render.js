// Showing a received instance on a canvas: the header parsed by dicomnet, the pixels through
// the viewer's own pipeline (js/imageinfo.js, js/pixels.js, js/voi.js). Uncompressed only;
// compressed instances are shown after upload, in the viewer.

import { PIXEL_DATA, parseDataset, readPart10, TAGS } from "../dicomnet/index.js";
import { decodable, frameBytes, imageInfo } from "../js/imageinfo.js";
import { rgbValues, storedValues } from "../js/pixels.js";
import { buildLut, defaultVoi, renderGray, renderRgb, storedRange } from "../js/voi.js";

const UNCOMPRESSED = new Set(["1.2.840.10008.1.2", "1.2.840.10008.1.2.1"]);
const NUMERIC = new Set(["US", "SS", "UL", "SL", "FL", "FD", "DS", "IS"]);
const PIXEL_KEYWORDS = [
  "Rows",
  "Columns",
  "SamplesPerPixel",
  "PhotometricInterpretation",
  "PlanarConfiguration",
  "BitsAllocated",
  "BitsStored",
  "HighBit",
  "PixelRepresentation",
  "NumberOfFrames",
  "RescaleSlope",
  "RescaleIntercept",
  "WindowCenter",
  "WindowWidth",
  "WindowCenterWidthExplanation",
  "VOILUTFunction",
  "PixelSpacing",
  "ImagerPixelSpacing",
  "PresentationLUTShape",
];

/** The pixel-module attributes of a parsed dataset as DICOM JSON (PS3.18 F.2), for imageInfo. */
export function pixelModuleJson(ds) {
  const meta = {};
  for (const keyword of PIXEL_KEYWORDS) {
    const tag = TAGS[keyword];
    const element = ds.get(tag);
    if (!element) continue;
    const key = tag.toString(16).toUpperCase().padStart(8, "0");
    const vr = element.vr;
    meta[key] = { vr, Value: NUMERIC.has(vr) ? ds.numbers(tag) : ds.strings(tag) };
  }
  return meta;
}

/** Draw the first frame of a Part 10 instance; throws an Error saying why it cannot. */
export function renderToCanvas(part10, canvas) {
  const { datasetOffset, implicit, transferSyntaxUID } = readPart10(part10);
  if (!UNCOMPRESSED.has(transferSyntaxUID)) {
    throw new Error(`compressed (${transferSyntaxUID}): upload it and open it in the viewer`);
  }
  const ds = parseDataset(part10, { start: datasetOffset, implicit });
  const info = imageInfo(pixelModuleJson(ds));
  const pixels = ds.raw(PIXEL_DATA);
  if (!pixels || !decodable(info)) throw new Error("no pixel data this page can show");
  const frame = pixels.subarray(0, frameBytes(info));
  canvas.width = info.columns;
  canvas.height = info.rows;
  const context = canvas.getContext("2d");
  const image = context.createImageData(info.columns, info.rows);
  if (info.samplesPerPixel === 1) {
    const { values, min, max } = storedValues(frame, info);
    const [lo, hi] = storedRange(info, min, max);
    renderGray(values, buildLut(info, defaultVoi(info, min, max), lo, hi), image.data);
  } else {
    renderRgb(rgbValues(frame, info), null, false, image.data);
  }
  context.putImageData(image, 0, 0);
  return info;
}
