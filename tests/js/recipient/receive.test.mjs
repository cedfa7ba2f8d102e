// The browser recipient's transfer (receive.js) against an in-memory sharing node: what it
// stores in the instance store, and when it says the transfer failed.

import assert from "node:assert/strict";
import { test } from "node:test";
import { encodeElements } from "../../../src/isthmus/viewer/dicomnet/dataset.js";
import { TAGS } from "../../../src/isthmus/viewer/dicomnet/dictionary.js";
import { toPart10 } from "../../../src/isthmus/viewer/dicomnet/part10.js";
import { ShareError } from "../../../src/isthmus/viewer/recipient/connect.js";
import { Mailbox } from "../../../src/isthmus/viewer/recipient/mailbox.js";
import { hex } from "../../../src/isthmus/viewer/recipient/proof.js";
import { CHUNK_SIZE, receive } from "../../../src/isthmus/viewer/recipient/receive.js";

const CT = "1.2.840.10008.5.1.4.1.1.2";
const EXPLICIT_LE = "1.2.840.10008.1.2.1";
const STUDY = "1.2.826.0.1.3680043.10.1.1";
const SERIES = `${STUDY}.1`;

/** A Part 10 CT instance of `study` (the file meta and the dataset name the same SOP UID). */
function instance(sop, study = STUDY) {
  const dataset = encodeElements([
    { tag: TAGS.SOPClassUID, vr: "UI", value: CT },
    { tag: TAGS.SOPInstanceUID, vr: "UI", value: sop },
    { tag: TAGS.StudyInstanceUID, vr: "UI", value: study },
    { tag: TAGS.SeriesInstanceUID, vr: "UI", value: SERIES },
    { tag: TAGS.Modality, vr: "CS", value: "CT" },
  ]);
  return toPart10(dataset, { sopClassUID: CT, sopInstanceUID: sop, transferSyntaxUID: EXPLICIT_LE });
}

/**
 * A sharing node at the other end of a data channel: it sends the manifest of `study`
 * naming `entries` ({sop, bytes}: the manifest names sop, the bytes sent are `bytes`),
 * answers each request with the chunks and "done" with "bye".
 */
async function sharingNode(study, entries) {
  const channel = new EventTarget();
  channel.readyState = "open";
  const deliver = (data) => setImmediate(() => channel.dispatchEvent(Object.assign(new Event("message"), { data })));
  const manifest = [];
  for (const [position, { sop, bytes }] of entries.entries()) {
    const sha256 = hex(await crypto.subtle.digest("SHA-256", bytes));
    manifest.push({ position, sop, series: SERIES, size: bytes.length, sha256 });
  }
  channel.send = (text) => {
    const doc = JSON.parse(text);
    if (doc.type === "done") deliver(JSON.stringify({ type: "bye" }));
    if (doc.type !== "request") return;
    for (const [position, number] of doc.chunks) {
      const data = entries[position].bytes.subarray(number * CHUNK_SIZE, (number + 1) * CHUNK_SIZE);
      const frame = new Uint8Array(9 + data.length);
      const view = new DataView(frame.buffer);
      view.setUint8(0, 0x43);
      view.setUint32(1, position);
      view.setUint32(5, number);
      frame.set(data, 9);
      deliver(frame.buffer);
    }
  };
  channel.close = () => {
    channel.readyState = "closed";
  };
  const mail = new Mailbox(channel);
  const total = manifest.length;
  deliver(JSON.stringify({ type: "manifest", version: 1, study, total, chunk_size: CHUNK_SIZE, instances: manifest }));
  return { channel, mail };
}

/** An InstanceStore as receive() uses it: nothing held, the records put. */
function memoryStore() {
  const records = [];
  return { records, keys: async () => [], put: async (record) => records.push(record) };
}

test("the instances the manifest names, of its study, are stored", async () => {
  const { channel, mail } = await sharingNode(STUDY, [
    { sop: `${SERIES}.1`, bytes: instance(`${SERIES}.1`) },
    { sop: `${SERIES}.10`, bytes: instance(`${SERIES}.10`) }, // odd length: padded with a NUL
  ]);
  const store = memoryStore();
  const figures = await receive(channel, mail, store);
  assert.equal(figures.stored, 2);
  assert.deepEqual(
    store.records.map((r) => [r.sopInstanceUID, r.studyInstanceUID]),
    [
      [`${SERIES}.1`, STUDY],
      [`${SERIES}.10`, STUDY],
    ],
  );
});

test("an instance that is not the one its manifest entry names is refused and the transfer fails", async () => {
  const { channel, mail } = await sharingNode(STUDY, [
    { sop: `${SERIES}.1`, bytes: instance(`${SERIES}.1`) },
    { sop: `${SERIES}.2`, bytes: instance("1.2.3.4.5.6") },
    { sop: `${SERIES}.3`, bytes: instance(`${SERIES}.3`) },
  ]);
  const store = memoryStore();
  await assert.rejects(receive(channel, mail, store), (error) => {
    assert.ok(error instanceof ShareError);
    assert.match(error.message, /1 instance\(s\) refused/);
    assert.match(error.message, new RegExp(`${SERIES}.2 .*SOP Instance UID`));
    return true;
  });
  assert.deepEqual(store.records.map((r) => r.sopInstanceUID).sort(), [`${SERIES}.1`, `${SERIES}.3`]);
});

test("instances of another study than the manifest's are refused and the transfer fails", async () => {
  const other = "1.2.826.0.1.3680043.10.1.99";
  const { channel, mail } = await sharingNode(STUDY, [
    { sop: `${SERIES}.1`, bytes: instance(`${SERIES}.1`, other) },
    { sop: `${SERIES}.2`, bytes: instance(`${SERIES}.2`, other) },
  ]);
  const store = memoryStore();
  await assert.rejects(receive(channel, mail, store), /2 instance\(s\) refused.*Study Instance UID/);
  assert.deepEqual(store.records, []);
});

test("an instance whose bytes are not a DICOM file is refused and the transfer fails", async () => {
  const { channel, mail } = await sharingNode(STUDY, [
    { sop: `${SERIES}.1`, bytes: new TextEncoder().encode("not a DICOM file") },
  ]);
  const store = memoryStore();
  await assert.rejects(receive(channel, mail, store), /1 instance\(s\) refused.*not a DICOM file/);
  assert.deepEqual(store.records, []);
});
