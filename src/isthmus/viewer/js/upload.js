// Upload by STOW-RS (PS3.18 10.5): files or whole folders, dropped anywhere or chosen, sent in
// batches with a progress bar and a result per file from the response's Referenced/Failed SOP
// Sequences (PS3.18 10.5.3, failure reasons PS3.4 Annex GG / B.2.3).

import { statusText } from "../dicomnet/status.js";
import { items, num, TAG, text } from "./dicomjson.js";
import { formatBytes, h } from "./dom.js";

const BATCH_FILES = 40;
const BATCH_BYTES = 24 * 1024 * 1024;

export class Uploader {
  constructor(api, dialog) {
    this.api = api;
    this.dialog = dialog;
    this.progress = dialog.querySelector("#upload-progress");
    this.summary = dialog.querySelector("#upload-summary");
    this.results = dialog.querySelector("#upload-results tbody");
    this.busy = false;
    dialog.querySelector("#upload-close").addEventListener("click", () => dialog.close());
    for (const id of ["#upload-files", "#upload-folder"]) {
      const input = dialog.querySelector(id);
      input.addEventListener("change", () => {
        const files = Array.from(input.files).map((file) => ({ file, path: file.webkitRelativePath || file.name }));
        input.value = "";
        this.upload(files);
      });
    }
    this.watchDrops();
  }

  open() {
    if (!this.dialog.open) this.dialog.showModal();
  }

  /** Dropping files or folders anywhere on the page uploads them. */
  watchDrops() {
    const overlay = document.getElementById("drop-overlay");
    let depth = 0;
    const hasFiles = (e) => Array.from(e.dataTransfer?.types ?? []).includes("Files");
    document.addEventListener("dragenter", (e) => {
      if (hasFiles(e)) {
        depth++;
        overlay.hidden = false;
      }
    });
    document.addEventListener("dragleave", () => {
      depth = Math.max(0, depth - 1);
      if (!depth) overlay.hidden = true;
    });
    document.addEventListener("dragover", (e) => {
      if (hasFiles(e)) {
        e.preventDefault();
        e.dataTransfer.dropEffect = "copy";
      }
    });
    document.addEventListener("drop", async (e) => {
      if (!hasFiles(e)) return;
      e.preventDefault();
      depth = 0;
      overlay.hidden = true;
      const entries = Array.from(e.dataTransfer.items ?? [])
        .map((item) => item.webkitGetAsEntry?.())
        .filter(Boolean);
      const files = entries.length
        ? await collect(entries)
        : Array.from(e.dataTransfer.files).map((file) => ({ file, path: file.name }));
      this.upload(files);
    });
  }

  /** Send [{file, path}] and report per file. */
  async upload(files) {
    // The Part 10 reader (and the data dictionary it brings) loads when the first upload starts.
    const { readFileMeta } = await import("../dicomnet/part10.js");
    this.open();
    if (this.busy) {
      this.summary.textContent = "An upload is already running; wait for it to finish.";
      return;
    }
    if (!files.length) {
      this.summary.textContent = "No files found.";
      return;
    }
    this.busy = true;
    this.results.replaceChildren();
    const total = files.reduce((n, f) => n + f.file.size, 0);
    let done = 0;
    const counts = { stored: 0, failed: 0, skipped: 0 };
    this.progress.hidden = false;
    this.progress.max = total || 1;
    this.progress.value = 0;
    const rows = new Map(files.map((f) => [f, this.row(f.path)]));
    try {
      for (const batch of batches(files)) {
        const parts = [];
        for (const f of batch) {
          const bytes = new Uint8Array(await f.file.arrayBuffer());
          const meta = readFileMeta(bytes);
          if (!meta?.sopInstance) {
            counts.skipped++;
            mark(rows.get(f), "bad", "not a DICOM file (no Part 10 header); not sent");
            done += f.file.size;
            continue;
          }
          parts.push({ f, bytes, sop: meta.sopInstance });
        }
        if (parts.length) {
          this.summary.textContent = `Uploading ${formatBytes(done)} of ${formatBytes(total)}…`;
          const base = done;
          const sent = parts.reduce((n, p) => n + p.f.file.size, 0);
          const result = await this.api.stow(
            parts.map((p) => p.bytes),
            (loaded, all) => {
              this.progress.value = base + Math.min(sent, (loaded / Math.max(1, all)) * sent);
            },
          );
          for (const p of parts) {
            const outcome = outcomeOf(result, p.sop);
            mark(rows.get(p.f), outcome.css, outcome.text);
            counts[outcome.ok ? "stored" : "failed"]++;
          }
          done += sent;
        }
        this.progress.value = done;
      }
    } catch (err) {
      this.summary.textContent = `Upload stopped: ${err.message}`;
      this.busy = false;
      return;
    }
    this.progress.value = this.progress.max;
    this.summary.textContent = `Done: ${counts.stored} stored, ${counts.failed} failed, ${counts.skipped} not DICOM.`;
    this.busy = false;
    if (counts.stored) document.dispatchEvent(new CustomEvent("isthmus:uploaded", { detail: counts }));
  }

  row(path) {
    const result = h("td", {}, "waiting");
    const tr = h("tr", {}, h("td", {}, path), result);
    this.results.append(tr);
    return result;
  }
}

function mark(cell, css, message) {
  cell.className = css;
  cell.textContent = message;
}

/** What the STOW-RS response says about one SOP instance. */
export function outcomeOf(result, sop) {
  const body = Array.isArray(result.body) ? result.body[0] : result.body;
  const find = (seq) => items(body ?? {}, seq).find((it) => text(it, TAG.ReferencedSOPInstanceUID) === sop);
  const failed = find(TAG.FailedSOPSequence);
  if (failed)
    return {
      ok: false,
      css: "bad",
      text: `failed: ${statusText(num(failed, TAG.FailureReason, null), "C-STORE") || "refused"}`,
    };
  const stored = find(TAG.ReferencedSOPSequence);
  if (stored) {
    const warning = num(stored, TAG.WarningReason, null);
    return warning === null
      ? { ok: true, css: "ok", text: "stored" }
      : { ok: true, css: "warn", text: `stored, with warning: ${statusText(warning, "C-STORE")}` };
  }
  if (result.status >= 200 && result.status < 300 && !body) return { ok: true, css: "ok", text: "stored" };
  const message = result.status === 413 ? "too large for the server" : (result.text || "").slice(0, 120);
  return { ok: false, css: "bad", text: `failed: HTTP ${result.status}${message ? ` (${message})` : ""}` };
}

function* batches(files) {
  let batch = [];
  let size = 0;
  for (const f of files) {
    if (batch.length && (batch.length >= BATCH_FILES || size + f.file.size > BATCH_BYTES)) {
      yield batch;
      batch = [];
      size = 0;
    }
    batch.push(f);
    size += f.file.size;
  }
  if (batch.length) yield batch;
}

/** Every file under dropped entries (folders read recursively). */
async function collect(entries) {
  const out = [];
  const visit = async (entry, prefix) => {
    if (entry.isFile) {
      const file = await new Promise((resolve, reject) => entry.file(resolve, reject));
      out.push({ file, path: prefix + entry.name });
    } else if (entry.isDirectory) {
      const reader = entry.createReader();
      for (;;) {
        const batch = await new Promise((resolve, reject) => reader.readEntries(resolve, reject));
        if (!batch.length) break;
        for (const child of batch) await visit(child, `${prefix}${entry.name}/`);
      }
    }
  };
  for (const entry of entries) await visit(entry, "");
  return out;
}
