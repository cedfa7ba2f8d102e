// The share page (served at /share/LINK_ID, the secret in location.hash): pull the study
// over WebRTC from the sharing node into this browser's DICOM node store (IndexedDB), show
// the first image as soon as it is verified, the rest as they arrive, and offer a ZIP.
// Only signalling reaches the node (GET …/ice, POST …/offer); no DICOMweb.

import { InstanceStore } from "../dicomnet/index.js";
import { formatBytes, h } from "../js/dom.js";
import { openSink } from "../js/download.js";
import { safeName, ZipWriter } from "../js/zip.js";
import { renderToCanvas } from "../node/render.js";
import { connect } from "./connect.js";
import { receive } from "./receive.js";

const $ = (id) => document.getElementById(id);
// For tests and the benchmark: milestones (performance.now()) and the outcome.
const state = { openedAt: performance.now(), firstImageAt: null, doneAt: null, status: "connecting", message: "" };
window.__share = state;

function say(message, kind = "") {
  const el = $("share-status");
  el.textContent = message;
  el.classList.toggle("error", kind === "error");
  el.classList.toggle("done", kind === "done");
  state.message = message;
}

function linkParts() {
  const linkId = decodeURIComponent(location.pathname.replace(/\/+$/, "").split("/").pop() || "");
  const secret = location.hash.slice(1);
  return { linkId, secret };
}

/** The received images: per series, SOP UIDs in instance order; the slider walks the first series. */
const view = { series: new Map(), shown: null, store: null, entries: [] };

function seriesList() {
  $("share-series").replaceChildren(
    ...[...view.series.entries()].map(([uid, s]) =>
      h("li", { "data-series": uid }, `${s.label}: ${s.have.length} of ${s.total}`),
    ),
  );
}

function show(part10) {
  try {
    renderToCanvas(part10, $("share-canvas"));
    return true;
  } catch (error) {
    $("share-image").textContent = `Cannot show this image here: ${error.message}`;
    return false;
  }
}

function onManifest({ entries, held }) {
  view.entries = entries;
  for (const e of entries) {
    if (!view.series.has(e.series))
      view.series.set(e.series, { label: `Series ${view.series.size + 1}`, total: 0, have: [] });
    const s = view.series.get(e.series);
    s.total++;
    if (held.has(e.sop)) s.have.push(e.sop);
  }
  seriesList();
  const first = entries[0];
  if (first && held.has(first.sop)) {
    view.store.get(first.sop).then((r) => r && firstImage(r.part10));
  }
}

function firstImage(part10) {
  if (state.firstImageAt !== null) return;
  if (show(part10)) {
    state.firstImageAt = performance.now();
    view.shown = 0;
  }
}

let listTimer = null;
function onStored(entry, part10) {
  const s = view.series.get(entry.series);
  s.have.push(entry.sop);
  if (entry.position === 0 || state.firstImageAt === null) firstImage(part10);
  const slider = $("share-slider");
  const first = view.series.get(view.entries[0].series);
  slider.max = String(Math.max(0, first.have.length - 1));
  slider.disabled = first.have.length < 2;
  if (!listTimer)
    listTimer = setTimeout(() => {
      listTimer = null;
      seriesList();
    }, 250);
}

function onProgress(f, started) {
  const done = f.already + f.stored;
  const progress = $("share-progress");
  progress.max = f.instances || 1;
  progress.value = done;
  const seconds = (performance.now() - started) / 1000;
  const rate = seconds > 0 ? f.bytesReceived / 1e6 / seconds : 0;
  $("share-figures").textContent =
    `${done} of ${f.instances} instances · ${formatBytes(f.bytesHeld + f.bytesReceived)} of ${formatBytes(f.bytesTotal)} · ${rate.toFixed(1)} MB/s`;
  state.figures = { ...f, seconds, mbPerSecond: rate };
}

async function slide() {
  const first = view.series.get(view.entries[0]?.series);
  const sop = first?.have[Number($("share-slider").value)];
  const record = sop && (await view.store.get(sop));
  if (record) {
    show(record.part10);
    $("share-image").textContent = `Image ${Number($("share-slider").value) + 1} of ${first.total}`;
  }
}

/** Every instance of the study, from IndexedDB, as a ZIP (names like the viewer's download). */
async function downloadZip(study) {
  const uids = await view.store.keys(study);
  const sink = await openSink(`${safeName(study)}.zip`, 0);
  const zip = new ZipWriter((chunk) => sink.write(chunk));
  for (const uid of uids) {
    const r = await view.store.get(uid);
    const series = `S${String(r.seriesNumber ?? 0).padStart(3, "0")}_${safeName(r.modality, "OT")}_${safeName(r.seriesDescription, "series")}`;
    const file = r.instanceNumber == null ? safeName(uid) : `IMG${String(r.instanceNumber).padStart(5, "0")}`;
    await zip.add(`${series}/${file}.dcm`, r.part10);
  }
  await zip.finish();
  await sink.close();
}

async function main() {
  const { linkId, secret } = linkParts();
  if (!linkId || !secret) {
    state.status = "failed";
    say("This link has no secret (the part after #): copy the whole link.", "error");
    return;
  }
  try {
    view.store = await new InstanceStore().open();
    const { pc, channel, mail } = await connect(linkId, secret);
    state.status = "transferring";
    say("Connected: receiving the study…");
    const started = performance.now();
    let study = "";
    const figures = await receive(channel, mail, view.store, {
      manifest: (m) => {
        study = m.study;
        $("share-study").textContent = `Study ${m.study} · ${m.entries.length} instances`;
        onManifest(m);
      },
      stored: onStored,
      progress: (f) => onProgress(f, started),
      refetch: (e) => console.warn(`instance ${e.sop} failed verification; fetching it again`),
    });
    pc.close();
    state.doneAt = performance.now();
    state.status = "complete";
    state.study = study;
    seriesList();
    onProgress(figures, started);
    say(
      `Complete and verified: ${figures.instances} instances (${formatBytes(figures.bytesTotal)}), kept in this browser.`,
      "done",
    );
    const zip = $("share-zip");
    zip.disabled = false;
    zip.addEventListener("click", () =>
      downloadZip(study).catch((error) => say(`The ZIP failed: ${error.message}`, "error")),
    );
  } catch (error) {
    state.status = "failed";
    say(`This shared study cannot be received: ${error.message}`, "error");
  }
}

$("share-slider").addEventListener("input", slide);
main();
