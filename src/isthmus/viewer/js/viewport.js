// The image viewport: draws a decoded frame through the grayscale pipeline into a canvas
// (W/L on the raw values, in the browser), with zoom/pan/rotate/flip, overlay text and lengths.

import { formatDate, formatTime, num, personName, TAG, text } from "./dicomjson.js";
import { apply, distance, fitZoom, initialView, invert, transform, zoomAbout } from "./geometry.js";
import { buildLut, defaultVoi, PRESETS, renderGray, renderRgb, storedRange } from "./voi.js";

const SVG = "http://www.w3.org/2000/svg";

export class Viewport extends EventTarget {
  constructor(el) {
    super();
    this.el = el;
    this.canvas = el.querySelector("canvas");
    this.ctx = this.canvas.getContext("2d");
    this.svg = el.querySelector("svg");
    this.corners = {
      tl: el.querySelector(".tl"),
      tr: el.querySelector(".tr"),
      bl: el.querySelector(".bl"),
      br: el.querySelector(".br"),
    };
    this.message = el.querySelector(".viewport-message");
    this.scratch = document.createElement("canvas");
    this.scratchCtx = this.scratch.getContext("2d");
    this.imageData = null;
    this.lutCache = { key: "", table: null };
    this.frame = null;
    this.entry = null;
    this.position = { index: 0, total: 0 };
    this.measurements = new Map();
    this.drawing = null;
    this.resetState();
    new ResizeObserver(() => this.resize()).observe(el);
    this.resize();
  }

  resetState() {
    this.view = initialView();
    this.voi = null; // null: the preset (or the file's default) decides
    this.preset = "default";
    this.userInvert = false;
  }

  get size() {
    return { width: this.el.clientWidth, height: this.el.clientHeight };
  }

  resize() {
    const dpr = window.devicePixelRatio || 1;
    const { width, height } = this.size;
    this.canvas.width = Math.max(1, Math.round(width * dpr));
    this.canvas.height = Math.max(1, Math.round(height * dpr));
    this.render();
  }

  /** Show a frame (null: waiting for it). `context` carries series/study text for the overlay. */
  setFrame(frame, entry, position, context) {
    this.frame = frame;
    this.entry = entry;
    this.position = position;
    this.context = context;
    this.render();
  }

  showMessage(text) {
    this.message.textContent = text || "";
  }

  /** The image's shape for geometry: columns, rows and pixel aspect ratio. */
  imageShape() {
    const info = this.frame?.info;
    if (!info) return null;
    const columns = this.frame.kind === "bitmap" ? this.frame.bitmap.width : info.columns;
    const rows = this.frame.kind === "bitmap" ? this.frame.bitmap.height : info.rows;
    const sp = info.pixelSpacing;
    const aspect = sp && sp[0] > 0 && sp[1] > 0 ? sp[0] / sp[1] : 1;
    return { columns, rows, aspect: Math.abs(aspect - 1) < 1e-3 ? 1 : aspect };
  }

  /** The transform in use (fitted views follow the viewport's size). */
  matrix() {
    const image = this.imageShape();
    if (!image) return null;
    const view = this.view.fitted ? { ...this.view, zoom: fitZoom(image, this.size, this.view.rotation) } : this.view;
    return transform(view, image, this.size);
  }

  effectiveZoom() {
    const image = this.imageShape();
    if (!image) return 1;
    return this.view.fitted ? fitZoom(image, this.size, this.view.rotation) : this.view.zoom;
  }

  /** The window in force for the current frame. */
  currentVoi() {
    const f = this.frame;
    if (!f?.info) return null;
    if (this.voi) return this.voi;
    if (f.kind === "rgb") return null;
    const preset = PRESETS.find((p) => p.id === this.preset);
    if (preset?.width) return { center: preset.center, width: preset.width, fn: "LINEAR", label: preset.label };
    if (f.kind !== "gray") return null;
    if (this.preset === "full")
      return { ...defaultVoi({ ...f.info, windows: [], voiLuts: [] }, f.min, f.max), label: "full range" };
    return defaultVoi(f.info, f.min, f.max);
  }

  render() {
    if (this.pending) return;
    this.pending = requestAnimationFrame(() => {
      this.pending = 0;
      this.draw();
    });
  }

  /** Draw now (also used by cine and scrolling, which already run in animation frames). */
  draw() {
    const { ctx, canvas } = this;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.fillStyle = "#000";
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    const f = this.frame;
    if (f && (f.kind === "gray" || f.kind === "rgb" || f.kind === "bitmap")) {
      const source = f.kind === "bitmap" ? f.bitmap : this.paint(f);
      const m = this.matrix();
      const dpr = canvas.width / Math.max(1, this.size.width);
      ctx.setTransform(m[0] * dpr, m[1] * dpr, m[2] * dpr, m[3] * dpr, m[4] * dpr, m[5] * dpr);
      ctx.imageSmoothingEnabled = this.effectiveZoom() < 3;
      if (f.kind === "bitmap" && this.userInvert) ctx.filter = "invert(1)";
      ctx.drawImage(source, 0, 0);
      ctx.filter = "none";
    }
    this.drawMeasurements();
    this.drawOverlay();
    this.dispatchEvent(new Event("drawn"));
  }

  /** The frame's pixels through the LUT into the scratch canvas (reused between frames). */
  paint(f) {
    const { columns, rows } = f.info;
    if (!this.imageData || this.imageData.width !== columns || this.imageData.height !== rows) {
      this.imageData = new ImageData(columns, rows);
      this.scratch.width = columns;
      this.scratch.height = rows;
    }
    if (f.kind === "rgb") {
      renderRgb(f.rgb, this.voi, this.userInvert, this.imageData.data);
    } else {
      renderGray(f.values, this.lut(f), this.imageData.data);
    }
    this.scratchCtx.putImageData(this.imageData, 0, 0);
    return this.scratch;
  }

  lut(f) {
    const info = f.info;
    const voi = this.currentVoi();
    const [lo, hi] = storedRange(info, f.min, f.max);
    const key = [
      info.slope,
      info.intercept,
      info.photometric,
      info.presentationInverse,
      lo,
      hi,
      voi.center,
      voi.width,
      voi.fn,
      voi.lut ? info.voiLuts.indexOf(voi.lut) : -1,
      this.userInvert,
      info.modalityLut ? this.entry?.sopUid : "",
    ].join("|");
    if (this.lutCache.key !== key) this.lutCache = { key, table: buildLut(info, voi, lo, hi, this.userInvert) };
    return this.lutCache.table;
  }

  // --- tools -----------------------------------------------------------------------------

  /** Window/level drag: right/left changes width, up/down changes level (center). */
  adjustWindow(dx, dy) {
    const voi = this.currentVoi();
    if (!voi) {
      if (this.frame?.kind === "rgb") this.voi = { center: 127.5 - dy, width: Math.max(1, 256 + dx), fn: "LINEAR" };
      this.render();
      return;
    }
    const f = this.frame;
    const range = f && f.kind === "gray" ? Math.abs((f.max - f.min) * (f.info.slope || 1)) : voi.width;
    const step = Math.max(range / 1024, voi.width / 512, 0.5);
    this.voi = {
      center: voi.center + dy * step,
      width: Math.max(1, voi.width + dx * step),
      fn: voi.fn === "SIGMOID" ? "SIGMOID" : "LINEAR",
      label: "custom",
    };
    this.render();
    this.dispatchEvent(new Event("voi"));
  }

  setPreset(id) {
    this.preset = id;
    this.voi = null;
    this.render();
    this.dispatchEvent(new Event("voi"));
  }

  zoomBy(factor, point = [this.size.width / 2, this.size.height / 2]) {
    this.unfit();
    this.view = zoomAbout(this.view, factor, point, this.size);
    this.render();
  }

  panBy(dx, dy) {
    this.unfit();
    this.view = { ...this.view, panX: this.view.panX + dx, panY: this.view.panY + dy };
    this.render();
  }

  unfit() {
    if (this.view.fitted) this.view = { ...this.view, zoom: this.effectiveZoom(), fitted: false };
  }

  fit() {
    this.view = { ...this.view, fitted: true, panX: 0, panY: 0 };
    this.render();
  }

  rotate() {
    this.view = { ...this.view, rotation: (this.view.rotation + 1) % 4 };
    this.render();
  }

  flip(axis) {
    this.view = { ...this.view, [axis]: !this.view[axis] };
    this.render();
  }

  toggleInvert() {
    this.userInvert = !this.userInvert;
    this.render();
    this.dispatchEvent(new Event("voi"));
  }

  reset() {
    this.resetState();
    this.measurements.clear();
    this.render();
    this.dispatchEvent(new Event("voi"));
  }

  /** Image coordinates of a viewport point (CSS pixels). */
  toImage(x, y) {
    const m = this.matrix();
    return m ? apply(invert(m), x, y) : null;
  }

  measureKey() {
    return this.entry ? `${this.entry.sopUid}:${this.entry.frame}` : "";
  }

  startLength(x, y) {
    const p = this.toImage(x, y);
    if (!p) return;
    this.drawing = { p, q: p };
    this.render();
  }

  moveLength(x, y) {
    if (!this.drawing) return;
    this.drawing.q = this.toImage(x, y);
    this.render();
  }

  endLength() {
    const d = this.drawing;
    this.drawing = null;
    if (d && Math.hypot(d.q[0] - d.p[0], d.q[1] - d.p[1]) > 0.5) {
      const key = this.measureKey();
      this.measurements.set(key, [...(this.measurements.get(key) ?? []), d]);
    }
    this.render();
  }

  drawMeasurements() {
    const lines = [...(this.measurements.get(this.measureKey()) ?? [])];
    if (this.drawing) lines.push(this.drawing);
    const m = this.matrix();
    this.svg.replaceChildren();
    if (!m) return;
    const spacing = this.frame?.info?.measureSpacing ?? null;
    for (const { p, q } of lines) {
      const [x1, y1] = apply(m, ...p);
      const [x2, y2] = apply(m, ...q);
      const { value, unit } = distance(p, q, spacing);
      const label = `${value.toFixed(unit === "mm" ? 1 : 0)} ${unit}`;
      this.svg.append(
        el("line", { x1, y1, x2, y2 }),
        el("circle", { cx: x1, cy: y1, r: 3 }),
        el("circle", { cx: x2, cy: y2, r: 3 }),
      );
      const t = el("text", { x: x2 + 8, y: y2 - 8, "data-length": value.toFixed(2), "data-unit": unit });
      t.textContent = label;
      this.svg.append(t);
    }
  }

  /** Overlay text in the corners: patient, study, series, image position, W/L and zoom. */
  drawOverlay() {
    const meta = this.entry?.meta;
    const c = this.corners;
    if (!meta) {
      for (const k of Object.keys(c)) c[k].textContent = "";
      this.el.setAttribute("aria-label", "No image");
      return;
    }
    const voi = this.currentVoi();
    const { index, total } = this.position;
    const sex = text(meta, TAG.PatientSex);
    const birth = formatDate(text(meta, TAG.PatientBirthDate));
    set(c.tl, [
      personName(text(meta, TAG.PatientName)),
      text(meta, TAG.PatientID),
      [birth, sex].filter(Boolean).join("  "),
    ]);
    set(c.tr, [
      text(meta, TAG.StudyDescription),
      `${formatDate(text(meta, TAG.StudyDate))} ${formatTime(text(meta, TAG.StudyTime))}`.trim(),
      `Se ${num(meta, TAG.SeriesNumber, "")}: ${text(meta, TAG.SeriesDescription)}`.trim(),
    ]);
    const instance = num(meta, TAG.InstanceNumber, null);
    const frameText = this.entry.frames > 1 ? `  Fr ${this.entry.frame}/${this.entry.frames}` : "";
    const thickness = num(meta, TAG.SliceThickness, null);
    const location = num(meta, TAG.SliceLocation, null);
    set(c.bl, [
      `Im ${index + 1}/${total}${instance === null ? "" : `  (#${instance})`}${frameText}`,
      [location === null ? "" : `Loc ${location.toFixed(1)} mm`, thickness === null ? "" : `Thk ${thickness} mm`]
        .filter(Boolean)
        .join("  "),
    ]);
    const wl = voi ? `W ${Math.round(voi.width)}  L ${Math.round(voi.center)}` : "W/L —";
    const zoom = `Zoom ${Math.round(this.effectiveZoom() * 100)}%`;
    const extra = this.frame?.kind === "bitmap" ? "rendered by server" : "";
    set(c.br, [wl + (this.userInvert ? "  inv" : ""), zoom, extra]);
    this.el.setAttribute(
      "aria-label",
      `Image ${index + 1} of ${total}${instance === null ? "" : `, instance ${instance}`}, ${wl}, ${zoom}`,
    );
    this.el.dataset.instanceNumber = instance ?? "";
    this.el.dataset.index = String(index);
    this.el.dataset.window = voi ? `${voi.center},${voi.width}` : "";
  }
}

function set(node, lines) {
  const value = lines.filter(Boolean).join("\n");
  if (node.textContent !== value) node.textContent = value;
}

function el(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  return node;
}
