// The pixel pipeline: stored values, modality LUT, VOI LUT and windows, MONOCHROME1, color.

import assert from "node:assert/strict";
import { test } from "node:test";

import { decodable, frameBytes, imageInfo } from "../../../src/isthmus/viewer/js/imageinfo.js";
import { rgbValues, storedValues } from "../../../src/isthmus/viewer/js/pixels.js";
import {
  buildLut,
  defaultVoi,
  isInverted,
  modalityValue,
  renderGray,
  renderRgb,
  storedRange,
  windowValue,
} from "../../../src/isthmus/viewer/js/voi.js";

/** DICOM JSON for an image, keyword → value. */
function meta(fields) {
  const tags = {
    Rows: ["00280010", "US"],
    Columns: ["00280011", "US"],
    BitsAllocated: ["00280100", "US"],
    BitsStored: ["00280101", "US"],
    HighBit: ["00280102", "US"],
    PixelRepresentation: ["00280103", "US"],
    SamplesPerPixel: ["00280002", "US"],
    PhotometricInterpretation: ["00280004", "CS"],
    PlanarConfiguration: ["00280006", "US"],
    RescaleSlope: ["00281053", "DS"],
    RescaleIntercept: ["00281052", "DS"],
    WindowCenter: ["00281050", "DS"],
    WindowWidth: ["00281051", "DS"],
    VOILUTFunction: ["00281056", "CS"],
    PixelSpacing: ["00280030", "DS"],
    PresentationLUTShape: ["20500020", "CS"],
  };
  const out = {};
  for (const [k, v] of Object.entries(fields)) {
    if (tags[k]) out[tags[k][0]] = { vr: tags[k][1], Value: Array.isArray(v) ? v : [v] };
    else out[k] = v;
  }
  return out;
}

const u16 = (...v) => new Uint8Array(Uint16Array.from(v).buffer);
const i16 = (...v) => new Uint8Array(Int16Array.from(v).buffer);

test("signed 16-bit pixels are read as negative values", () => {
  const info = imageInfo(
    meta({ Rows: 1, Columns: 3, BitsAllocated: 16, BitsStored: 16, HighBit: 15, PixelRepresentation: 1 }),
  );
  const { values, min, max } = storedValues(i16(-1000, 0, 1200), info);
  assert.deepEqual(Array.from(values), [-1000, 0, 1200]);
  assert.equal(min, -1000);
  assert.equal(max, 1200);
});

test("Bits Stored masks out overlay bits above the High Bit", () => {
  const info = imageInfo(
    meta({ Rows: 1, Columns: 2, BitsAllocated: 16, BitsStored: 12, HighBit: 11, PixelRepresentation: 0 }),
  );
  const { values } = storedValues(u16(0xf123, 0x0fff), info);
  assert.deepEqual(Array.from(values), [0x123, 0xfff]);
});

test("12-bit signed stored values are sign-extended", () => {
  const info = imageInfo(
    meta({ Rows: 1, Columns: 3, BitsAllocated: 16, BitsStored: 12, HighBit: 11, PixelRepresentation: 1 }),
  );
  const { values } = storedValues(u16(0x0800, 0x0fff, 0x07ff), info);
  assert.deepEqual(Array.from(values), [-2048, -1, 2047]);
});

test("a High Bit below Bits Allocated - 1 shifts the stored bits down", () => {
  const info = imageInfo(
    meta({ Rows: 1, Columns: 1, BitsAllocated: 16, BitsStored: 8, HighBit: 11, PixelRepresentation: 0 }),
  );
  assert.deepEqual(Array.from(storedValues(u16(0x0ab0), info).values), [0xab]);
});

test("frames at an odd byte offset are still read", () => {
  const info = imageInfo(meta({ Rows: 1, Columns: 2, BitsAllocated: 16, BitsStored: 16, PixelRepresentation: 0 }));
  const buffer = new Uint8Array(5);
  buffer.set(u16(258, 772), 1);
  assert.deepEqual(Array.from(storedValues(buffer.subarray(1), info).values), [258, 772]);
});

test("a short frame is an error, not garbage", () => {
  const info = imageInfo(meta({ Rows: 2, Columns: 2, BitsAllocated: 16 }));
  assert.throws(() => storedValues(new Uint8Array(6), info), /6 bytes, 8 expected/);
});

test("1-bit frames unpack least significant bit first", () => {
  const info = imageInfo(meta({ Rows: 1, Columns: 10, BitsAllocated: 1, BitsStored: 1, HighBit: 0 }));
  assert.equal(frameBytes(info), 2);
  assert.deepEqual(
    Array.from(storedValues(Uint8Array.of(0b00000101, 0b10), info).values),
    [1, 0, 1, 0, 0, 0, 0, 0, 0, 1],
  );
});

test("rescale slope and intercept give Hounsfield units", () => {
  const info = imageInfo(meta({ RescaleSlope: "2", RescaleIntercept: "-1024" }));
  assert.equal(modalityValue(1000, info), 976);
});

test("a Modality LUT Sequence replaces rescale", () => {
  const info = imageInfo({
    ...meta({ RescaleSlope: 1, RescaleIntercept: 0 }),
    "00283000": {
      vr: "SQ",
      Value: [{ "00283002": { vr: "US", Value: [4, 10, 16] }, "00283006": { vr: "US", Value: [100, 200, 300, 400] } }],
    },
  });
  assert.equal(modalityValue(10, info), 100);
  assert.equal(modalityValue(12, info), 300);
  assert.equal(modalityValue(99, info), 400, "values past the table take its last entry");
  assert.equal(modalityValue(0, info), 100, "values before the table take its first entry");
});

test("LINEAR window follows PS3.3 C.11.2.1.2.1", () => {
  assert.equal(windowValue(-161, 40, 400), 0);
  assert.equal(windowValue(240, 40, 400), 1);
  assert.ok(Math.abs(windowValue(40, 40, 400) - 0.50125) < 1e-3);
  assert.ok(windowValue(-100, 40, 400) > 0 && windowValue(-100, 40, 400) < 0.5);
});

test("LINEAR_EXACT and SIGMOID windows", () => {
  assert.equal(windowValue(40, 40, 400, "LINEAR_EXACT"), 0.5);
  assert.equal(windowValue(-160, 40, 400, "LINEAR_EXACT"), 0);
  assert.equal(windowValue(40, 40, 400, "SIGMOID"), 0.5);
  assert.ok(Math.abs(windowValue(240, 40, 400, "SIGMOID") - 1 / (1 + Math.exp(-2))) < 1e-9);
});

test("CT lut maps air black, water mid-gray and bone white in a soft tissue window", () => {
  const info = imageInfo(
    meta({
      BitsAllocated: 16,
      BitsStored: 12,
      HighBit: 11,
      PixelRepresentation: 1,
      RescaleSlope: 1,
      RescaleIntercept: -1024,
      WindowCenter: 40,
      WindowWidth: 400,
    }),
  );
  const [lo, hi] = storedRange(info, 0, 0);
  assert.deepEqual([lo, hi], [-2048, 2047]);
  const voi = defaultVoi(info, lo, hi);
  assert.deepEqual([voi.center, voi.width], [40, 400]);
  const table = buildLut(info, voi, lo, hi);
  const gray = (stored) => table.lut[stored - table.offset];
  assert.equal(gray(0), 0, "-1024 HU is black");
  assert.equal(gray(1024 + 1000), 255, "+1000 HU is white");
  assert.ok(Math.abs(gray(1024 + 40) - 128) <= 1, "the window centre is mid-gray");
});

test("MONOCHROME1 displays the lowest value white; user invert flips it back", () => {
  const info = imageInfo(
    meta({ PhotometricInterpretation: "MONOCHROME1", BitsAllocated: 8, BitsStored: 8, HighBit: 7 }),
  );
  assert.equal(isInverted(info, false), true);
  assert.equal(isInverted(info, true), false);
  const voi = { center: 128, width: 256, fn: "LINEAR" };
  const table = buildLut(info, voi, 0, 255);
  assert.equal(table.lut[0], 255);
  assert.equal(table.lut[255], 0);
  const back = buildLut(info, voi, 0, 255, true);
  assert.equal(back.lut[0], 0);
});

test("Presentation LUT Shape INVERSE inverts MONOCHROME2", () => {
  const info = imageInfo(meta({ PresentationLUTShape: "INVERSE" }));
  assert.equal(isInverted(info, false), true);
});

test("without a window the full range of modality values is shown", () => {
  const info = imageInfo(meta({ BitsAllocated: 16, BitsStored: 16, PixelRepresentation: 0 }));
  const voi = defaultVoi(info, 100, 1100);
  const table = buildLut(info, voi, 100, 1100);
  assert.equal(table.lut[0], 0);
  assert.equal(table.lut[1000], 255);
});

test("a VOI LUT Sequence maps values and is normalised to the bits it uses", () => {
  const info = imageInfo({
    ...meta({ BitsAllocated: 16, BitsStored: 12, PixelRepresentation: 0 }),
    "00283010": {
      vr: "SQ",
      Value: [{ "00283002": { vr: "US", Value: [3, 100, 16] }, "00283006": { vr: "US", Value: [0, 2048, 4095] } }],
    },
  });
  const voi = defaultVoi(info, 0, 4095);
  assert.ok(voi.lut);
  const table = buildLut(info, voi, 0, 4095);
  assert.equal(table.lut[100], 0);
  assert.equal(table.lut[101], 128);
  assert.equal(table.lut[102], 255);
  assert.equal(table.lut[4000], 255);
});

test("VOI LUT Function in the file is used by the default window", () => {
  const info = imageInfo(meta({ WindowCenter: 40, WindowWidth: 400, VOILUTFunction: "SIGMOID" }));
  assert.equal(defaultVoi(info, 0, 100).fn, "SIGMOID");
});

test("renderGray writes opaque gray RGBA through the lut", () => {
  const table = { lut: Uint8Array.of(0, 100, 255), offset: -1 };
  const rgba = renderGray(Int16Array.of(-1, 0, 1, 5), table, new Uint8ClampedArray(16));
  assert.deepEqual(Array.from(rgba), [0, 0, 0, 255, 100, 100, 100, 255, 255, 255, 255, 255, 255, 255, 255, 255]);
});

test("planar RGB is interleaved and YBR_FULL converted to RGB", () => {
  const planar = imageInfo(
    meta({
      Rows: 1,
      Columns: 2,
      SamplesPerPixel: 3,
      PhotometricInterpretation: "RGB",
      PlanarConfiguration: 1,
      BitsAllocated: 8,
      BitsStored: 8,
      HighBit: 7,
    }),
  );
  assert.ok(decodable(planar));
  assert.deepEqual(Array.from(rgbValues(Uint8Array.of(1, 2, 3, 4, 5, 6), planar).rgb), [1, 3, 5, 2, 4, 6]);
  const ybr = imageInfo(
    meta({
      Rows: 1,
      Columns: 1,
      SamplesPerPixel: 3,
      PhotometricInterpretation: "YBR_FULL",
      BitsAllocated: 8,
      BitsStored: 8,
      HighBit: 7,
    }),
  );
  assert.deepEqual(Array.from(rgbValues(Uint8Array.of(76, 85, 255), ybr).rgb), [254, 0, 0]);
});

test("renderRgb is the identity until a window is chosen", () => {
  const rgba = renderRgb(Uint8Array.of(10, 20, 30), null, false, new Uint8ClampedArray(4));
  assert.deepEqual(Array.from(rgba), [10, 20, 30, 255]);
  const inverted = renderRgb(Uint8Array.of(10, 20, 30), null, true, new Uint8ClampedArray(4));
  assert.deepEqual(Array.from(inverted), [245, 235, 225, 255]);
});

test("palette color is left to the server renderer", () => {
  const info = imageInfo(meta({ PhotometricInterpretation: "PALETTE COLOR", BitsAllocated: 8, Rows: 2, Columns: 2 }));
  assert.equal(decodable(info), false);
});

test("decoded YBR frames from the server are read as RGB; native YBR_FULL_422 is not", async () => {
  const { decodedColor } = await import("../../../src/isthmus/viewer/js/loader.js");
  const info = imageInfo(
    meta({
      Rows: 2,
      Columns: 2,
      SamplesPerPixel: 3,
      PhotometricInterpretation: "YBR_FULL_422",
      BitsAllocated: 8,
      BitsStored: 8,
      HighBit: 7,
    }),
  );
  assert.equal(decodedColor(info, 12).photometric, "RGB");
  assert.equal(decodedColor(info, 8).photometric, "YBR_FULL_422");
  assert.equal(decodedColor({ ...info, photometric: "YBR_ICT" }, 12).photometric, "RGB");
  assert.equal(decodedColor({ ...info, photometric: "YBR_FULL" }, 12).photometric, "YBR_FULL");
});

test("stored values already inside Bits Stored are used as they are", () => {
  const info = imageInfo(
    meta({ Rows: 1, Columns: 3, BitsAllocated: 16, BitsStored: 12, HighBit: 11, PixelRepresentation: 1 }),
  );
  const bytes = i16(-5, 100, 2047);
  const { values } = storedValues(bytes, info);
  assert.deepEqual(Array.from(values), [-5, 100, 2047]);
  assert.equal(values.buffer, bytes.buffer, "no copy was made");
});
