// Loading a series' frames in the background, nearest to the current image first.
// Frames come from WADO-RS /frames (PS3.18 10.4.1.1.5) as application/octet-stream, decoded
// here, or as baseline JPEG when stored so, decoded by the browser ("auto"); if the server
// refuses that offer, uncompressed only ("raw"); failing both, frames are rendered by the
// server (/rendered) and W/L changes ask it for a new rendering.

import { decodable, imageInfo } from "./imageinfo.js";
import { rgbValues, storedValues } from "./pixels.js";
import { prefetchOrder } from "./stack.js";

const CONCURRENCY = 5;
const FRAMES_PER_REQUEST = 16;
const UNSUPPORTED = new Set([400, 404, 406, 415, 500, 501, 503]);

/** One series' frames: get(i) returns a decoded frame or null; emits "frame" and "progress". */
export class SeriesLoader extends EventTarget {
  constructor(api, studyUid, seriesUid, stack) {
    super();
    this.api = api;
    this.studyUid = studyUid;
    this.seriesUid = seriesUid;
    this.stack = stack;
    this.frames = new Array(stack.length).fill(null);
    this.state = new Array(stack.length).fill(0); // 0 missing, 1 loading, 2 loaded, 3 failed
    this.loaded = 0;
    this.failed = 0;
    this.mode = "auto";
    this.infos = new Map();
    this.current = 0;
    this.running = 0;
    this.stopped = true;
    this.controller = new AbortController();
    this.bytes = 0;
  }

  info(entry) {
    let info = this.infos.get(entry.sopUid);
    if (!info) {
      info = imageInfo(entry.meta);
      this.infos.set(entry.sopUid, info);
    }
    return info;
  }

  get(index) {
    return this.frames[index];
  }

  get complete() {
    return this.loaded + this.failed >= this.stack.length;
  }

  /** Start or resume loading from `index` outward. */
  start(index = this.current) {
    this.current = index;
    this.stopped = false;
    this.queue = prefetchOrder(this.stack.length, index);
    this.pump();
  }

  /** Re-prioritise around the image being looked at. */
  focus(index) {
    if (index === this.current) return;
    this.current = index;
    if (!this.stopped) {
      this.queue = prefetchOrder(this.stack.length, index);
      this.pump();
    }
  }

  stop() {
    this.stopped = true;
    this.controller.abort();
    this.controller = new AbortController();
    for (let i = 0; i < this.state.length; i++) if (this.state[i] === 1) this.state[i] = 0;
    this.running = 0;
  }

  pump() {
    while (!this.stopped && this.running < CONCURRENCY) {
      const batch = this.nextBatch();
      if (!batch) return;
      this.running++;
      const signal = this.controller.signal;
      this.fetchBatch(batch, signal)
        .catch((err) => {
          if (signal.aborted) return;
          for (const i of batch.indexes) this.fail(i, err);
        })
        .finally(() => {
          if (signal.aborted) return;
          this.running--;
          this.pump();
        });
    }
  }

  /** The next missing frame and, for multi-frame instances, its missing neighbours. */
  nextBatch() {
    while (this.queue.length) {
      const i = this.queue.shift();
      if (this.state[i] !== 0) continue;
      const entry = this.stack[i];
      const indexes = [i];
      for (let j = i + 1; j < this.stack.length && indexes.length < FRAMES_PER_REQUEST; j++) {
        if (this.stack[j].sopUid !== entry.sopUid || this.state[j] !== 0) break;
        indexes.push(j);
      }
      for (const j of indexes) this.state[j] = 1;
      return { entry, indexes };
    }
    return null;
  }

  async fetchBatch({ entry, indexes }, signal) {
    const info = this.info(entry);
    const numbers = indexes.map((i) => this.stack[i].frame);
    const mode = this.mode;
    if (mode !== "rendered" && decodable(info)) {
      try {
        const parts = await this.api.frames(this.studyUid, this.seriesUid, entry.sopUid, numbers, {
          raw: mode === "raw",
          signal,
        });
        if (parts.length < numbers.length) throw new Error(`server sent ${parts.length} of ${numbers.length} frames`);
        for (let k = 0; k < indexes.length; k++)
          this.done(indexes[k], await decode(parts[k], info), parts[k].bytes.length);
        return;
      } catch (err) {
        if (signal.aborted || !(UNSUPPORTED.has(err.status) || err instanceof DecodeError)) throw err;
        if (this.mode === mode) this.mode = mode === "auto" ? "raw" : "rendered";
        for (const i of indexes) this.state[i] = 0;
        this.queue.unshift(...indexes);
        return;
      }
    }
    for (let k = 0; k < indexes.length; k++) {
      const blob = await this.api.rendered(this.studyUid, this.seriesUid, entry.sopUid, numbers[k], { signal });
      this.done(indexes[k], { kind: "bitmap", bitmap: await createImageBitmap(blob), info, window: null }, blob.size);
    }
  }

  /** A frame rendered by the server with another window (fallback path only). */
  async rerender(index, voi) {
    const entry = this.stack[index];
    const window = `${Math.round(voi.center)},${Math.round(voi.width)},${(voi.fn || "LINEAR").toLowerCase().replace("_", "-")}`;
    const blob = await this.api.rendered(this.studyUid, this.seriesUid, entry.sopUid, entry.frame, { window });
    const frame = { kind: "bitmap", bitmap: await createImageBitmap(blob), info: this.info(entry), window };
    this.frames[index] = frame;
    return frame;
  }

  done(index, frame, size) {
    this.frames[index] = frame;
    this.state[index] = 2;
    this.loaded++;
    this.bytes += size;
    this.emit();
    this.dispatchEvent(new CustomEvent("frame", { detail: { index } }));
  }

  fail(index, err) {
    if (this.state[index] === 2 || this.state[index] === 3) return;
    this.state[index] = 3;
    this.failed++;
    this.frames[index] = { kind: "error", message: err.message || String(err) };
    this.emit();
    this.dispatchEvent(new CustomEvent("frame", { detail: { index } }));
  }

  emit() {
    this.dispatchEvent(
      new CustomEvent("progress", {
        detail: {
          loaded: this.loaded,
          failed: this.failed,
          total: this.stack.length,
          bytes: this.bytes,
          mode: this.mode,
        },
      }),
    );
  }
}

class DecodeError extends Error {}

const JPEG_BASELINE = "1.2.840.10008.1.2.4.50";

/** A frame part → {kind: "gray", values, min, max, info} or {kind: "rgb", rgb, info}. */
async function decode(part, info) {
  try {
    if (part.type === "image/jpeg") {
      if (part.transferSyntax && part.transferSyntax !== JPEG_BASELINE)
        throw new Error(`cannot decode ${part.transferSyntax}`);
      return await decodeJpeg(part.bytes, info);
    }
    if (info.samplesPerPixel === 3)
      return { kind: "rgb", ...rgbValues(part.bytes, decodedColor(info, part.bytes.length)), info };
    return { kind: "gray", ...storedValues(part.bytes, info), info };
  } catch (err) {
    throw new DecodeError(err.message);
  }
}

/**
 * The colour model of uncompressed frame bytes. A server decoding a compressed YBR image
 * sends RGB (what a transcode to Explicit VR Little Endian holds): 3 bytes per pixel where
 * YBR_FULL_422 would have 2; YBR_RCT/YBR_ICT/YBR_PARTIAL_420 only exist compressed.
 */
export function decodedColor(info, length) {
  const pixels = info.rows * info.columns;
  const rgbBytes = pixels * 3 * (info.bitsAllocated / 8);
  if (info.photometric === "YBR_FULL_422" && length >= rgbBytes) return { ...info, photometric: "RGB" };
  if (["YBR_RCT", "YBR_ICT", "YBR_PARTIAL_420", "YBR_PARTIAL_422"].includes(info.photometric))
    return { ...info, photometric: "RGB" };
  return info;
}

/** Baseline JPEG decoded by the browser; monochrome keeps one channel as 8-bit stored values. */
async function decodeJpeg(bytes, info) {
  const bitmap = await createImageBitmap(new Blob([bytes], { type: "image/jpeg" }));
  const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  ctx.drawImage(bitmap, 0, 0);
  const rgba = ctx.getImageData(0, 0, bitmap.width, bitmap.height).data;
  const n = bitmap.width * bitmap.height;
  const eight = {
    ...info,
    bitsAllocated: 8,
    bitsStored: 8,
    highBit: 7,
    pixelRepresentation: 0,
    rows: bitmap.height,
    columns: bitmap.width,
  };
  if (info.samplesPerPixel === 3) {
    const rgb = new Uint8Array(n * 3);
    for (let i = 0, j = 0; i < n; i++, j += 4) {
      rgb[3 * i] = rgba[j];
      rgb[3 * i + 1] = rgba[j + 1];
      rgb[3 * i + 2] = rgba[j + 2];
    }
    return { kind: "rgb", rgb, info: { ...eight, photometric: "RGB" } };
  }
  const values = new Uint8Array(n);
  let min = 255;
  let max = 0;
  for (let i = 0; i < n; i++) {
    const v = rgba[4 * i];
    values[i] = v;
    if (v < min) min = v;
    if (v > max) max = v;
  }
  return { kind: "gray", values, min, max, info: eight };
}
