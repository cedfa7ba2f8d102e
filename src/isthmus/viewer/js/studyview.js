// The study view: series thumbnails, the viewport and its tools, scrolling, cine, tags,
// background loading of the series and the study download.

import { formatDate, num, personName, TAG, text } from "./dicomjson.js";
import { $, $$, formatBytes, h, toast } from "./dom.js";
import { downloadStudy } from "./download.js";
import { attachGestures } from "./interaction.js";
import { SeriesLoader } from "./loader.js";
import { buildStack } from "./stack.js";
import { TagsPanel } from "./tagspanel.js";
import { Viewport } from "./viewport.js";
import { PRESETS } from "./voi.js";

// Series of these modalities hold no images (PS3.3 C.7.3.1.1.1): no thumbnail is asked for.
const NON_IMAGE_MODALITIES = new Set(["SR", "KO", "PR", "DOC", "REG", "RTPLAN", "RTRECORD", "FID", "AU", "ECG", "HD"]);
const TOOL_KEYS = { w: "wl", p: "pan", z: "zoom", l: "length", s: "scroll" };
// Decoded frames kept for series other than the one on screen (least recently shown go first).
const MEMORY_BUDGET = (navigator.deviceMemory && navigator.deviceMemory <= 4 ? 384 : 1536) * 1024 * 1024;

export class StudyView {
  constructor(api, root) {
    this.api = api;
    this.root = root;
    this.viewport = new Viewport($("#viewport", root));
    this.scrollbar = $("#scrollbar", root);
    this.tags = new TagsPanel($("#tags-panel", root), () => this.toggleTags(false));
    this.tool = "wl";
    this.studyUid = null;
    this.series = [];
    this.loaders = new Map();
    this.current = null;
    this.index = 0;
    this.cine = { playing: false, last: 0, raf: 0 };
    this.timing = {};
    this.setupToolbar();
    this.setupKeys();
    attachGestures(this.viewport.el, this.gestureActions());
    this.scrollbar.addEventListener("input", () => this.setIndex(Number(this.scrollbar.value)));
    this.viewport.addEventListener("voi", () => this.onVoiChanged());
    this.viewport.addEventListener("drawn", () => {
      if (this.viewport.frame && !this.timing.firstImage) {
        this.timing.firstImage = performance.now(); // ms since navigation start
        performance.mark("isthmus:first-image");
      }
    });
    $("#download-zip", root).addEventListener("click", () => this.download());
    window.__isthmusViewer = this; // for benchmarks and tests: timing and current state
  }

  // --- opening -------------------------------------------------------------------------

  async show(studyUid, seriesUid) {
    this.root.hidden = false;
    if (studyUid !== this.studyUid) await this.openStudy(studyUid, seriesUid);
    else if (seriesUid && seriesUid !== this.current?.uid) await this.openSeries(seriesUid);
    else if (this.loader && !this.loader.complete) this.loader.start(this.index); // back again
  }

  hide() {
    this.root.hidden = true;
    this.stopCine();
    if (this.current) this.loaders.get(this.current.uid)?.loader.stop();
  }

  async openStudy(studyUid, seriesUid) {
    this.close();
    this.studyUid = studyUid;
    this.timing = { opened: performance.now() };
    $("#study-title", this.root).textContent = "Loading study…";
    $("#study-sub", this.root).textContent = "";
    this.viewport.reset();
    this.viewport.setFrame(null, null, { index: 0, total: 0 }, null);
    this.viewport.showMessage("Loading…");
    let results;
    try {
      results = await this.api.seriesOf(studyUid);
    } catch (err) {
      this.viewport.showMessage(`Cannot open this study: ${err.message}`);
      $("#study-title", this.root).textContent = "Study not available";
      return;
    }
    if (studyUid !== this.studyUid) return;
    this.series = results
      .map((m) => ({
        uid: text(m, TAG.SeriesInstanceUID),
        number: num(m, TAG.SeriesNumber, null),
        modality: text(m, TAG.Modality),
        description: text(m, TAG.SeriesDescription),
        count: num(m, TAG.NumberOfSeriesRelatedInstances, 0),
      }))
      .sort((a, b) => (a.number ?? 1e9) - (b.number ?? 1e9));
    if (!this.series.length) {
      this.viewport.showMessage("This study has no series.");
      return;
    }
    this.renderSeriesList();
    const target = this.series.find((s) => s.uid === seriesUid) ?? this.series[0];
    const opening = this.openSeries(target.uid);
    this.loadThumbnails(studyUid);
    await opening;
  }

  close() {
    this.stopCine();
    for (const { loader } of this.loaders.values()) loader.stop();
    this.loaders.clear();
    for (const s of this.series) if (s.thumbUrl) URL.revokeObjectURL(s.thumbUrl);
    this.series = [];
    this.current = null;
    this.downloadController?.abort();
    $("#series-list ul", this.root).replaceChildren();
  }

  renderSeriesList() {
    const list = $("#series-list ul", this.root);
    list.replaceChildren(
      ...this.series.map((s) => {
        s.progress = h("progress", { max: Math.max(1, s.count), value: 0, hidden: true, "aria-label": "Loaded" });
        s.thumb = h("span", { class: "thumb" }, "…");
        s.button = h(
          "button",
          {
            type: "button",
            class: "series-button",
            "data-series": s.uid,
            "aria-current": "false",
            onclick: () => this.openSeries(s.uid),
          },
          s.thumb,
          h(
            "span",
            { class: "label" },
            `${s.number ?? "?"} · ${s.modality} · ${s.description || "(no description)"}`,
            h("br"),
            `${s.count} image${s.count === 1 ? "" : "s"}`,
          ),
          s.progress,
        );
        return h("li", {}, s.button);
      }),
    );
  }

  async loadThumbnails(studyUid) {
    const queue = [...this.series];
    const worker = async () => {
      while (queue.length && this.studyUid === studyUid) {
        const s = queue.shift();
        if (NON_IMAGE_MODALITIES.has(s.modality)) {
          s.thumb.textContent = s.modality;
          continue;
        }
        try {
          const blob = await this.api.thumbnail(studyUid, s.uid, 128);
          if (this.studyUid !== studyUid) return;
          s.thumbUrl = URL.createObjectURL(blob);
          s.thumb.replaceChildren(h("img", { src: s.thumbUrl, alt: `Series ${s.number ?? ""} thumbnail` }));
        } catch {
          s.thumb.textContent = "no preview";
        }
      }
    };
    await Promise.all([worker(), worker()]);
  }

  async openSeries(uid) {
    const s = this.series.find((x) => x.uid === uid);
    if (!s) return;
    this.stopCine();
    if (this.current && this.current.uid !== uid) this.loaders.get(this.current.uid)?.loader.stop();
    this.current = s;
    for (const x of this.series) x.button.setAttribute("aria-current", String(x === s));
    const url = new URL(location.href);
    url.searchParams.set("series", uid);
    history.replaceState(null, "", url.href);
    this.evict(uid);
    let entry = this.loaders.get(uid);
    if (!entry) {
      this.viewport.showMessage("Loading…");
      let metadata;
      try {
        metadata = await this.api.metadata(this.studyUid, uid);
      } catch (err) {
        this.viewport.showMessage(`Cannot load this series: ${err.message}`);
        return;
      }
      if (this.current !== s) return;
      const stack = buildStack(metadata.filter((m) => num(m, TAG.Rows, 0) > 0)); // images only
      const loader = new SeriesLoader(this.api, this.studyUid, uid, stack);
      entry = { loader, stack };
      this.loaders.set(uid, entry);
      loader.addEventListener("frame", (e) => {
        if (this.current === s && e.detail.index === this.index) this.showIndex();
      });
      loader.addEventListener("progress", (e) => this.onProgress(s, e.detail));
      this.setStudyTitle(metadata[0]);
    }
    entry.shown = performance.now();
    if (!entry.stack.length) {
      this.viewport.setFrame(null, null, { index: 0, total: 0 });
      this.viewport.showMessage("This series has no images (for example a report or a presentation state).");
      return;
    }
    if (document.activeElement === document.body) this.viewport.el.focus({ preventScroll: true });
    this.viewport.reset();
    this.scrollbar.max = String(Math.max(0, entry.stack.length - 1));
    this.scrollbar.disabled = entry.stack.length <= 1;
    this.setCineDefault(entry.stack[0]);
    this.index = 0;
    this.showIndex();
    if (!entry.loader.complete) entry.loader.start(0);
    this.onProgress(s, {
      loaded: entry.loader.loaded,
      failed: entry.loader.failed,
      total: entry.stack.length,
      bytes: entry.loader.bytes,
      mode: entry.loader.mode,
    });
  }

  /** Forget the frames of other series, least recently shown first, beyond the memory budget. */
  evict(keep) {
    let total = 0;
    for (const { loader } of this.loaders.values()) total += loader.bytes;
    const others = [...this.loaders.entries()]
      .filter(([uid]) => uid !== keep)
      .sort((a, b) => (a[1].shown ?? 0) - (b[1].shown ?? 0));
    for (const [uid, { loader }] of others) {
      if (total <= MEMORY_BUDGET) break;
      loader.stop();
      total -= loader.bytes;
      this.loaders.delete(uid);
    }
  }

  setStudyTitle(meta) {
    if (!meta) return;
    const name = personName(text(meta, TAG.PatientName)) || "(no name)";
    $("#study-title", this.root).textContent = name;
    $("#study-sub", this.root).textContent = [
      text(meta, TAG.PatientID),
      formatDate(text(meta, TAG.StudyDate)),
      text(meta, TAG.StudyDescription),
      text(meta, TAG.AccessionNumber) && `Acc ${text(meta, TAG.AccessionNumber)}`,
    ]
      .filter(Boolean)
      .join(" · ");
    document.title = `${name} · ${text(meta, TAG.StudyDescription) || "Study"} · Isthmus`;
  }

  // --- scrolling -----------------------------------------------------------------------

  get stack() {
    return this.current ? (this.loaders.get(this.current.uid)?.stack ?? []) : [];
  }

  get loader() {
    return this.current ? (this.loaders.get(this.current.uid)?.loader ?? null) : null;
  }

  setIndex(i) {
    const n = this.stack.length;
    if (!n) return;
    const next = Math.min(Math.max(0, Math.round(i)), n - 1);
    if (next === this.index && this.viewport.entry === this.stack[next]) return;
    this.index = next;
    this.showIndex();
  }

  step(delta) {
    this.setIndex(this.index + delta);
  }

  showIndex() {
    const stack = this.stack;
    const entry = stack[this.index];
    const loader = this.loader;
    if (!entry || !loader) return;
    const frame = loader.get(this.index);
    const ready = frame && frame.kind !== "error" ? frame : null;
    this.viewport.showMessage(
      !frame ? "Loading image…" : frame.kind === "error" ? `Cannot show this image: ${frame.message}` : "",
    );
    this.viewport.setFrame(ready, entry, { index: this.index, total: stack.length });
    if (this.scrollbar.value !== String(this.index)) this.scrollbar.value = String(this.index);
    this.scrollbar.setAttribute("aria-valuetext", `Image ${this.index + 1} of ${stack.length}`);
    loader.focus(this.index);
    if (this.tags.open) this.tags.show(entry.meta);
  }

  onProgress(s, { loaded, failed, total, bytes, mode }) {
    if (s.progress) {
      s.progress.max = Math.max(1, total);
      s.progress.value = loaded + failed;
      s.progress.hidden = loaded + failed >= total;
    }
    if (s !== this.current) return;
    const fill = $("#load-fill", this.root);
    fill.style.width = `${total ? (100 * (loaded + failed)) / total : 0}%`;
    const status = $("#load-status", this.root);
    const via = mode === "rendered" ? " (rendered by the server)" : "";
    if (loaded + failed >= total) {
      if (!this.timing.seriesLoaded) {
        this.timing.seriesLoaded = performance.now();
        performance.mark("isthmus:series-loaded");
      }
      status.textContent = `All ${total} images loaded${failed ? `, ${failed} failed` : ""} (${formatBytes(bytes)})${via}`;
      this.root.dataset.loaded = "true";
    } else {
      status.textContent = `Loading images: ${loaded} of ${total} (${formatBytes(bytes)})${via}`;
      this.root.dataset.loaded = "false";
    }
  }

  // --- tools -----------------------------------------------------------------------------

  gestureActions() {
    const vp = this.viewport;
    return {
      tool: () => this.tool,
      step: (n) => this.step(n),
      windowBy: (dx, dy) => vp.adjustWindow(dx, dy),
      panBy: (dx, dy) => vp.panBy(dx, dy),
      zoomBy: (f, p) => vp.zoomBy(f, p),
      lengthStart: (x, y) => vp.startLength(x, y),
      lengthMove: (x, y) => vp.moveLength(x, y),
      lengthEnd: () => vp.endLength(),
      snapshot: () => ({ voi: vp.voi, preset: vp.preset, view: vp.view }),
      restore: (s) => {
        vp.voi = s.voi;
        vp.preset = s.preset;
        vp.view = s.view;
        vp.render();
        this.onVoiChanged();
      },
      fit: () => vp.fit(),
    };
  }

  setupToolbar() {
    const presets = $("#preset", this.root);
    presets.replaceChildren(
      ...PRESETS.map((p) => h("option", { value: p.id }, p.width ? `${p.label} (${p.center}/${p.width})` : p.label)),
      h("option", { value: "custom", disabled: true }, "Custom"),
    );
    presets.addEventListener("change", () => this.viewport.setPreset(presets.value));
    for (const b of $$("[data-tool]", this.root)) b.addEventListener("click", () => this.setTool(b.dataset.tool));
    const actions = {
      fit: () => this.viewport.fit(),
      invert: () => this.viewport.toggleInvert(),
      rotate: () => this.viewport.rotate(),
      flipH: () => this.viewport.flip("flipH"),
      flipV: () => this.viewport.flip("flipV"),
      reset: () => this.viewport.reset(),
    };
    for (const b of $$("[data-action]", this.root)) {
      b.addEventListener("click", () => {
        actions[b.dataset.action]();
        this.syncToggles();
      });
    }
    $("#cine-play", this.root).addEventListener("click", () =>
      this.cine.playing ? this.stopCine() : this.startCine(),
    );
    $("#tags-toggle", this.root).addEventListener("click", () => this.toggleTags());
  }

  setTool(tool) {
    this.tool = tool;
    for (const b of $$("[data-tool]", this.root)) b.setAttribute("aria-checked", String(b.dataset.tool === tool));
  }

  syncToggles() {
    const vp = this.viewport;
    $('[data-action="invert"]', this.root).setAttribute("aria-pressed", String(vp.userInvert));
    $('[data-action="flipH"]', this.root).setAttribute("aria-pressed", String(vp.view.flipH));
    $('[data-action="flipV"]', this.root).setAttribute("aria-pressed", String(vp.view.flipV));
  }

  onVoiChanged() {
    const vp = this.viewport;
    $("#preset", this.root).value = vp.voi ? "custom" : vp.preset;
    this.syncToggles();
    // Frames rendered by the server get a new rendering for the new window, after a pause.
    if (vp.frame?.kind === "bitmap" && vp.voi) {
      clearTimeout(this.rerenderTimer);
      const index = this.index;
      this.rerenderTimer = setTimeout(async () => {
        try {
          const frame = await this.loader.rerender(index, vp.currentVoi());
          if (index === this.index) vp.setFrame(frame, this.stack[index], { index, total: this.stack.length });
        } catch (err) {
          toast(`Could not re-render: ${err.message}`);
        }
      }, 150);
    }
  }

  toggleTags(force) {
    const panel = $("#tags-panel", this.root);
    const open = force ?? panel.hidden;
    panel.hidden = !open;
    $("#tags-toggle", this.root).setAttribute("aria-pressed", String(open));
    if (open) {
      this.tags.show(this.stack[this.index]?.meta ?? null);
      $("#tags-search", this.root).focus();
    } else {
      this.viewport.el.focus();
    }
  }

  // --- cine ------------------------------------------------------------------------------

  setCineDefault(entry) {
    const info = entry ? this.loaders.get(this.current.uid).loader.info(entry) : null;
    const rate = info?.frameRate || (info?.frameTimeMs ? 1000 / info.frameTimeMs : 0);
    const select = $("#cine-fps", this.root);
    if (rate > 0) {
      const value = String(Math.round(rate));
      if (![...select.options].some((o) => o.value === value)) select.append(h("option", { value }, `${value} fps`));
      select.value = value;
    } else if (!select.dataset.chosen) {
      select.value = "10";
    }
  }

  startCine() {
    if (this.stack.length < 2) return;
    this.cine.playing = true;
    const button = $("#cine-play", this.root);
    button.setAttribute("aria-pressed", "true");
    button.textContent = "Pause";
    this.cine.last = performance.now();
    const tick = (now) => {
      if (!this.cine.playing) return;
      const interval = 1000 / Number($("#cine-fps", this.root).value || 10);
      if (now - this.cine.last >= interval) {
        const next = (this.index + 1) % this.stack.length;
        if (this.loader.get(next)) {
          this.cine.last = now - ((now - this.cine.last) % interval);
          this.setIndex(next);
        }
      }
      this.cine.raf = requestAnimationFrame(tick);
    };
    this.cine.raf = requestAnimationFrame(tick);
  }

  stopCine() {
    this.cine.playing = false;
    cancelAnimationFrame(this.cine.raf);
    const button = $("#cine-play", this.root);
    button.setAttribute("aria-pressed", "false");
    button.textContent = "Play";
  }

  // --- keyboard --------------------------------------------------------------------------

  setupKeys() {
    this.root.addEventListener("keydown", (e) => {
      if (this.root.hidden || e.altKey || e.ctrlKey || e.metaKey) return;
      const t = e.target;
      if (t.closest?.("#tags-panel") || t.tagName === "SELECT" || (t.tagName === "INPUT" && t.type !== "range")) return;
      if (t.tagName === "INPUT" && t.type === "range" && e.key.startsWith("Arrow")) return; // the slider steps itself
      if (t.tagName === "BUTTON" && (e.key === " " || e.key === "Enter")) return;
      if (this.handleKey(e)) e.preventDefault();
    });
  }

  handleKey(e) {
    const vp = this.viewport;
    const k = e.key;
    if (e.shiftKey && k.startsWith("Arrow")) {
      const d = 10;
      if (k === "ArrowLeft") vp.adjustWindow(-d, 0);
      if (k === "ArrowRight") vp.adjustWindow(d, 0);
      if (k === "ArrowUp") vp.adjustWindow(0, -d);
      if (k === "ArrowDown") vp.adjustWindow(0, d);
      return true;
    }
    switch (k) {
      case "ArrowDown":
      case "ArrowRight":
      case "j":
        this.step(1);
        return true;
      case "ArrowUp":
      case "ArrowLeft":
      case "k":
        this.step(-1);
        return true;
      case "PageDown":
        this.step(10);
        return true;
      case "PageUp":
        this.step(-10);
        return true;
      case "Home":
        this.setIndex(0);
        return true;
      case "End":
        this.setIndex(this.stack.length - 1);
        return true;
      case " ":
        if (this.cine.playing) this.stopCine();
        else this.startCine();
        return true;
      case "+":
      case "=":
        vp.zoomBy(1.25);
        return true;
      case "-":
        vp.zoomBy(0.8);
        return true;
      case "0":
      case "f":
        vp.fit();
        return true;
      case "i":
        vp.toggleInvert();
        return true;
      case "r":
        vp.rotate();
        return true;
      case "h":
        vp.flip("flipH");
        this.syncToggles();
        return true;
      case "v":
        vp.flip("flipV");
        this.syncToggles();
        return true;
      case "t":
        this.toggleTags();
        return true;
      case "Escape":
        vp.reset();
        this.syncToggles();
        return true;
      default:
        break;
    }
    if (TOOL_KEYS[k]) {
      this.setTool(TOOL_KEYS[k]);
      return true;
    }
    const preset = PRESETS.find((p) => p.key === k);
    if (preset) {
      vp.setPreset(preset.id);
      return true;
    }
    return false;
  }

  // --- download --------------------------------------------------------------------------

  async download() {
    const button = $("#download-zip", this.root);
    if (this.downloadController) {
      this.downloadController.abort();
      return;
    }
    const controller = new AbortController();
    this.downloadController = controller;
    const label = button.textContent;
    button.textContent = "Preparing…";
    button.setAttribute("aria-label", "Cancel the download");
    try {
      const metadata = await this.api.metadata(this.studyUid, null, controller.signal);
      await downloadStudy(
        this.api,
        this.studyUid,
        metadata,
        (msg) => {
          button.textContent = msg.replace(/^Downloading: /, "");
          button.title = msg;
        },
        controller.signal,
      );
    } catch (err) {
      if (err.name !== "AbortError") toast(`Download failed: ${err.message}`);
    } finally {
      this.downloadController = null;
      button.textContent = label;
      button.removeAttribute("aria-label");
    }
  }
}
