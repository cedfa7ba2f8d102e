// Grayscale display pipeline: stored value → Modality LUT → VOI LUT/window → presentation.
// PS3.3 C.11.1 (Modality LUT, rescale), C.11.2 (VOI LUT, window functions), C.7.6.3.1.2
// (MONOCHROME1 is displayed inverted), C.11.6 (Presentation LUT Shape INVERSE).

/** Modality value of a stored value (Modality LUT Sequence, else Rescale Slope/Intercept). */
export function modalityValue(stored, info) {
  const lut = info.modalityLut;
  if (lut?.data) {
    const i = Math.min(Math.max(stored - lut.first, 0), lut.data.length - 1);
    return lut.data[i];
  }
  return stored * info.slope + info.intercept;
}

/**
 * The window's output in [0, 1] for a modality value x (PS3.3 C.11.2.1.2.1 LINEAR,
 * C.11.2.1.3.2 LINEAR_EXACT, C.11.2.1.3.1 SIGMOID).
 */
export function windowValue(x, center, width, fn = "LINEAR") {
  if (fn === "SIGMOID") return 1 / (1 + Math.exp((-4 * (x - center)) / width));
  if (fn === "LINEAR_EXACT") {
    if (x <= center - width / 2) return 0;
    if (x > center + width / 2) return 1;
    return (x - center) / width + 0.5;
  }
  const w = Math.max(width, 1);
  if (x <= center - 0.5 - (w - 1) / 2) return 0;
  if (x > center - 0.5 + (w - 1) / 2) return 1;
  return w === 1 ? 1 : (x - (center - 0.5)) / (w - 1) + 0.5;
}

/** A VOI LUT's output in [0, 1] (PS3.3 C.11.2.1.1), normalised to the bits it really uses. */
export function voiLutValue(x, lut) {
  const i = Math.min(Math.max(Math.round(x) - lut.first, 0), lut.data.length - 1);
  return lut.data[i] / lutScale(lut);
}

function lutScale(lut) {
  if (lut._scale) return lut._scale;
  let max = 0;
  for (let i = 0; i < lut.data.length; i++) if (lut.data[i] > max) max = lut.data[i];
  // Many files declare 16 bits per entry and use 12: scale by the bits actually used.
  const used = Math.max(1, Math.ceil(Math.log2(max + 1)));
  lut._scale = 2 ** Math.min(used, lut.bits || 16) - 1;
  return lut._scale;
}

/** True when a monochrome image is displayed with black as the highest value. */
export function isInverted(info, userInvert) {
  const byFile = info.photometric === "MONOCHROME1" ? !info.presentationInverse : info.presentationInverse;
  return Boolean(byFile) !== Boolean(userInvert);
}

/**
 * The window to show when the user has not chosen one: the file's first window, else its
 * first VOI LUT, else the full range of modality values in the frame.
 * @returns {{center:number,width:number,fn:string,lut?:object,label:string}}
 */
export function defaultVoi(info, min, max) {
  if (info.windows.length) {
    const w = info.windows[0];
    return { center: w.center, width: w.width, fn: info.voiFunction, label: w.explanation || "file" };
  }
  if (info.voiLuts.length) {
    const lut = info.voiLuts[0];
    const lo = lut.first;
    const hi = lut.first + lut.data.length - 1;
    return {
      center: (lo + hi) / 2,
      width: Math.max(1, hi - lo + 1),
      fn: "LINEAR",
      lut,
      label: lut.explanation || "VOI LUT",
    };
  }
  const a = modalityValue(min, info);
  const b = modalityValue(max, info);
  const lo = Math.min(a, b);
  const hi = Math.max(a, b);
  return { center: (lo + hi + 1) / 2, width: Math.max(1, hi - lo + 1), fn: "LINEAR", label: "full range" };
}

/**
 * A lookup table from stored value to 8-bit gray over [min, max] stored values, combining
 * Modality LUT, VOI (window or LUT) and presentation. Index with `stored - offset`.
 * @param {object} voi {center, width, fn, lut?}
 */
export function buildLut(info, voi, min, max, userInvert = false) {
  const size = Math.max(1, max - min + 1);
  const lut = new Uint8Array(size);
  const invert = isInverted(info, userInvert);
  const useLut = voi.lut?.data;
  for (let i = 0; i < size; i++) {
    const m = modalityValue(min + i, info);
    let y = useLut ? voiLutValue(m, voi.lut) : windowValue(m, voi.center, voi.width, voi.fn || "LINEAR");
    if (invert) y = 1 - y;
    lut[i] = Math.round(Math.min(1, Math.max(0, y)) * 255);
  }
  return { lut, offset: min };
}

/** The range of stored values a LUT must cover: the Bits Stored range up to 16 bits. */
export function storedRange(info, min, max) {
  if (info.bitsStored > 16 || info.bitsAllocated > 16) return [min, max];
  if (info.pixelRepresentation === 1) return [-(2 ** (info.bitsStored - 1)), 2 ** (info.bitsStored - 1) - 1];
  return [0, 2 ** info.bitsStored - 1];
}

/** Write gray pixels through the LUT into RGBA bytes (ImageData.data). */
export function renderGray(values, { lut, offset }, rgba) {
  const out = new Uint32Array(rgba.buffer, rgba.byteOffset, values.length);
  const last = lut.length - 1;
  const little = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;
  for (let i = 0; i < values.length; i++) {
    let k = values[i] - offset;
    if (k < 0) k = 0;
    else if (k > last) k = last;
    const g = lut[k];
    out[i] = little ? (0xff000000 | (g << 16) | (g << 8) | g) >>> 0 : ((g << 24) | (g << 16) | (g << 8) | 0xff) >>> 0;
  }
  return rgba;
}

/** Color pixels through a per-channel window (identity unless the user changed it). */
export function renderRgb(rgb, voi, userInvert, rgba) {
  const lut = new Uint8Array(256);
  for (let v = 0; v < 256; v++) {
    let y = voi ? windowValue(v, voi.center, voi.width, "LINEAR") : v / 255;
    if (userInvert) y = 1 - y;
    lut[v] = Math.round(y * 255);
  }
  for (let i = 0, j = 0; j < rgba.length; i += 3, j += 4) {
    rgba[j] = lut[rgb[i]];
    rgba[j + 1] = lut[rgb[i + 1]];
    rgba[j + 2] = lut[rgb[i + 2]];
    rgba[j + 3] = 255;
  }
  return rgba;
}

/** Common presets (center/width in Hounsfield units for CT). */
export const PRESETS = Object.freeze([
  { id: "default", label: "Default (from file)", key: "1" },
  { id: "soft", label: "CT soft tissue", center: 40, width: 400, key: "2" },
  { id: "lung", label: "CT lung", center: -600, width: 1500, key: "3" },
  { id: "bone", label: "CT bone", center: 300, width: 1500, key: "4" },
  { id: "brain", label: "CT brain", center: 40, width: 80, key: "5" },
  { id: "full", label: "Full dynamic range", key: "6" },
]);
