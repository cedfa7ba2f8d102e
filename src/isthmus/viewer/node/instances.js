// Received instances: kept in IndexedDB (dicomnet/idbstore.js), listed live, viewable on a
// canvas, sent on to a peer (C-STORE SCU) or uploaded to the archive (STOW-RS).

import { store as cStore, readPart10, summarize, TAGS } from "../dicomnet/index.js";
import { DicomWeb } from "../js/api.js";
import { formatBytes, h } from "../js/dom.js";
import { renderToCanvas } from "./render.js";
import { say, session, withAssociation } from "./session.js";

const rows = new Map(); // SOP Instance UID → <tr>

/** C-STORE SCP: keep an instance (Part 10 bytes + summary); resolves once committed. */
export function saveInstance({ part10, header, transferSyntaxUID, callingAET }) {
  return session.store.put({ ...summarize(header, { transferSyntaxUID, sourceAET: callingAET }), part10 });
}

export async function showInstances() {
  const tbody = document.querySelector("#received tbody");
  tbody.replaceChildren();
  rows.clear();
  for (const record of (await session.store.list()).reverse()) addRow(record);
  updateCount();
  session.store.onChange(queueRow);
}

// While a series streams in, rows are added a few times a second rather than per instance:
// laying out a growing table for every image would slow the transfer down.
let queued = [];
let flushTimer = null;

function queueRow(record) {
  queued.push(record);
  if (!flushTimer) {
    flushTimer = setTimeout(() => {
      flushTimer = null;
      const batch = queued;
      queued = [];
      for (const r of batch) addRow(r);
      updateCount();
    }, 250);
  }
}

function updateCount() {
  document.getElementById("received-count").textContent = `(${rows.size})`;
}

function addRow(record) {
  const tbody = document.querySelector("#received tbody");
  const old = rows.get(record.sopInstanceUID);
  const tr = h(
    "tr",
    { "data-sop": record.sopInstanceUID },
    h("td", {}, h("input", { type: "checkbox", "aria-label": `Select image ${record.instanceNumber ?? ""}` })),
    h("td", {}, record.patientName.replace(/\^/g, " ")),
    h("td", {}, record.studyDate),
    h("td", {}, record.studyDescription),
    h("td", {}, record.modality),
    h("td", { class: "num" }, record.seriesNumber ?? ""),
    h("td", { class: "num" }, record.instanceNumber ?? ""),
    h("td", { class: "num" }, formatBytes(record.size)),
    h("td", {}, record.sourceAET || ""),
    h("td", {}, h("button", { type: "button", onclick: () => view(record.sopInstanceUID) }, "View")),
  );
  if (old) old.replaceWith(tr);
  else tbody.prepend(tr);
  rows.set(record.sopInstanceUID, tr);
}

function selected() {
  return [...rows.entries()].filter(([, tr]) => tr.querySelector("input").checked).map(([uid]) => uid);
}

export function selectAll() {
  const boxes = [...rows.values()].map((tr) => tr.querySelector("input"));
  const on = boxes.some((b) => !b.checked);
  for (const b of boxes) b.checked = on;
}

async function view(sopInstanceUID) {
  const dialog = document.getElementById("image-dialog");
  const message = dialog.querySelector("[data-role=message]");
  const record = await session.store.get(sopInstanceUID);
  dialog.querySelector("h2").textContent =
    `${record.patientName.replace(/\^/g, " ")} · ${record.modality} · image ${record.instanceNumber ?? ""}`;
  message.textContent = "";
  try {
    const info = renderToCanvas(record.part10, document.getElementById("instance-canvas"));
    message.textContent = `${info.columns} × ${info.rows}, ${record.transferSyntaxUID}`;
  } catch (error) {
    message.textContent = `Cannot show this instance here: ${error.message}`;
  }
  if (!dialog.open) dialog.showModal();
}

async function selectedRecords() {
  const uids = selected();
  if (!uids.length) throw new Error("select instances first");
  return Promise.all(uids.map((uid) => session.store.get(uid)));
}

/** C-STORE the selected instances to `peer`, each in its own SOP class and transfer syntax. */
export async function sendSelected(peer) {
  try {
    const records = await selectedRecords();
    const pairs = new Map();
    for (const r of records)
      pairs.set(`${r.sopClassUID} ${r.transferSyntaxUID}`, {
        sopClass: r.sopClassUID,
        transferSyntaxes: [r.transferSyntaxUID],
      });
    if (pairs.size > 128) throw new Error("more than 128 SOP class / transfer syntax pairs; send fewer at once");
    say("received-status", `Sending ${records.length} to ${peer}…`);
    let done = 0;
    let failed = 0;
    await withAssociation(
      peer,
      [...pairs.values()].map((p) => ({ abstractSyntax: p.sopClass, transferSyntaxes: p.transferSyntaxes })),
      async (service) => {
        for (const r of records) {
          try {
            await cStore(service, r.part10);
            done += 1;
          } catch (error) {
            failed += 1;
            say("received-status", error.message, true);
          }
          say(
            "received-status",
            `Sent ${done} of ${records.length} to ${peer}${failed ? `, ${failed} failed` : ""}…`,
            failed > 0,
          );
        }
      },
    );
    say(
      "received-status",
      `Sent ${done} of ${records.length} to ${peer}${failed ? `, ${failed} failed` : ""}.`,
      failed > 0,
    );
  } catch (error) {
    say("received-status", `Sending to ${peer} failed: ${error.message}`, true);
  }
}

/** STOW-RS the selected instances to this server's archive (the viewer's client). */
export async function uploadSelected() {
  try {
    const records = await selectedRecords();
    say("received-status", `Uploading ${records.length}…`);
    const result = await new DicomWeb("/dicom-web").stow(
      records.map((r) => r.part10),
      (sent, total) => say("received-status", `Uploading ${records.length}: ${Math.round((100 * sent) / total)}%`),
    );
    const ok = result.status >= 200 && result.status < 300;
    const study = records[0].studyInstanceUID;
    say(
      "received-status",
      ok
        ? `Uploaded ${records.length} (HTTP ${result.status}).`
        : `Upload failed: HTTP ${result.status} ${result.text?.slice(0, 200) || ""}`,
      !ok,
    );
    if (ok) {
      const link = h("a", { href: `./?study=${encodeURIComponent(study)}` }, "Open in the viewer");
      document.getElementById("received-status").append(" ", link);
    }
  } catch (error) {
    say("received-status", `Upload failed: ${error.message}`, true);
  }
}

export async function deleteSelected() {
  for (const uid of selected()) {
    await session.store.delete(uid);
    rows.get(uid)?.remove();
    rows.delete(uid);
  }
  updateCount();
}

/** SHA-256 of each stored dataset (the bytes after the file meta), for checking transfers. */
export async function datasetDigests() {
  const out = {};
  for (const { sopInstanceUID } of await session.store.list()) {
    const record = await session.store.get(sopInstanceUID);
    const { datasetOffset, meta } = readPart10(record.part10);
    const digest = await crypto.subtle.digest("SHA-256", record.part10.subarray(datasetOffset));
    out[sopInstanceUID] = {
      sha256: [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join(""),
      transferSyntaxUID: meta.string(TAGS.TransferSyntaxUID),
    };
  }
  return out;
}
