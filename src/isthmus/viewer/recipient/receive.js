// The receiving side of the transfer protocol in the browser (docs/p2p.md, "Messages"): read
// the manifest, ask only for the chunks of instances IndexedDB does not hold (≤ WINDOW
// outstanding, manifest order: first images first), verify each instance's length and
// SHA-256 (WebCrypto) before it is stored, fetch a bad one again, then say "done". A verified
// instance is stored only if it is the one its manifest entry names, of the manifest's study
// (its header's SOP and Study Instance UIDs): a sharing node cannot slip an instance into
// another study this browser holds. A refused one fails the transfer once the rest is stored.

import { PIXEL_DATA, parseDataset, readPart10, summarize } from "../dicomnet/index.js";
import { ShareError } from "./connect.js";
import { hex } from "./proof.js";

export const CHUNK_SIZE = 256 * 1024 - 1024;
const VERSION = 1;
const WINDOW = 32; // chunks outstanding (≤ 8 MiB)
const RETRIES = 3;
const REFILL = 4; // ask again once this many chunks of the window have arrived
const SILENCE_MS = 30_000;

function control(item) {
  let doc;
  try {
    doc = JSON.parse(item.data);
  } catch {
    throw new ShareError("the sharing node sent a text frame that is not JSON");
  }
  if (doc?.type === "error") throw new ShareError(`the sharing node stopped the transfer: ${doc.reason}`);
  return doc;
}

const closedError = () =>
  new ShareError("the connection closed before the study was complete: open the link again to resume");

async function manifest(mail) {
  const entries = [];
  let total = null;
  let study = "";
  while (total === null || entries.length < total) {
    const item = await mail.next(SILENCE_MS);
    if (item.closed) throw closedError();
    if (item.timeout) throw new ShareError("the sharing node sent no manifest");
    if (typeof item.data !== "string") throw new ShareError("a chunk before the manifest");
    const doc = control(item);
    if (doc.type !== "manifest") throw new ShareError(`expected the manifest, got ${doc.type}`);
    if (doc.version !== VERSION || doc.chunk_size !== CHUNK_SIZE)
      throw new ShareError(`unsupported protocol version ${doc.version} or chunk size`);
    total = doc.total;
    study = doc.study;
    entries.push(...doc.instances);
  }
  if (entries.some((e, i) => e.position !== i)) throw new ShareError("manifest positions are not 0…n-1");
  for (const e of entries) e.chunks = Math.max(1, Math.ceil(e.size / CHUNK_SIZE));
  return { study, entries };
}

/**
 * Run one transfer on an open channel, whose messages `mail` (a Mailbox) has held since the
 * channel was created, into `store` (an InstanceStore). `events` gets
 * manifest({study, entries, held}), stored(entry, part10), progress(figures), refetch(entry).
 * Resolves to the final figures once "done" is sent.
 */
export async function receive(channel, mail, store, events = {}) {
  const { study, entries } = await manifest(mail);
  const held = new Set(await store.keys(study));
  const todo = entries.filter((e) => !held.has(e.sop));
  const figures = {
    instances: entries.length,
    already: entries.length - todo.length,
    stored: 0,
    bytesTotal: entries.reduce((n, e) => n + e.size, 0),
    bytesHeld: entries.filter((e) => held.has(e.sop)).reduce((n, e) => n + e.size, 0),
    bytesReceived: 0,
    refetched: 0,
    refused: [], // [SOP Instance UID the entry names, why]
    requested: todo.map((e) => e.position),
  };
  events.manifest?.({ study, entries, held });
  events.progress?.(figures);

  let wanted = todo.flatMap((e) => Array.from({ length: e.chunks }, (_, n) => [e.position, n]));
  const pending = new Map(todo.map((e) => [e.position, { entry: e, parts: new Map(), attempts: 1 }]));
  const outstanding = new Set();
  const stores = [];
  let silent = 0;
  let failure = null;
  const send = (doc) => {
    if (channel.readyState !== "open") throw closedError();
    channel.send(JSON.stringify(doc));
  };
  const keyOf = (p, n) => p * 65536 + n;

  while (pending.size) {
    if (failure) throw failure;
    const free = WINDOW - outstanding.size;
    if (free >= REFILL && wanted.length) {
      const batch = wanted.slice(0, free);
      wanted = wanted.slice(free);
      for (const [p, n] of batch) outstanding.add(keyOf(p, n));
      send({ type: "request", chunks: batch });
    }
    const item = await mail.next(SILENCE_MS);
    if (item.closed) throw closedError();
    if (item.timeout) {
      if (++silent > RETRIES) throw new ShareError(`no chunk for ${(silent * SILENCE_MS) / 1000} s`);
      wanted = [...outstanding]
        .sort((a, b) => a - b)
        .map((k) => [Math.floor(k / 65536), k % 65536])
        .concat(wanted);
      outstanding.clear();
      continue;
    }
    if (item.wake) continue;
    silent = 0;
    if (typeof item.data === "string") {
      control(item);
      continue;
    }
    const view = new DataView(item.data);
    if (item.data.byteLength < 9 || view.getUint8(0) !== 0x43)
      throw new ShareError("a binary frame that is not a chunk");
    const position = view.getUint32(1);
    const number = view.getUint32(5);
    if (!outstanding.delete(keyOf(position, number))) continue; // a duplicate after a re-request
    const task = pending.get(position);
    const data = new Uint8Array(item.data, 9);
    task.parts.set(number, data);
    figures.bytesReceived += data.length;
    if (task.parts.size < task.entry.chunks) continue;
    if (task.verifying) continue;
    task.verifying = true; // verified off the loop, while the next chunks arrive
    verify(task).then(
      (part10) => {
        task.verifying = false;
        if (part10) {
          pending.delete(position);
          const { found, reason } = admit(part10, task.entry, study);
          if (reason) {
            figures.refused.push([task.entry.sop, reason]);
            events.progress?.(figures);
            mail.wake();
            return;
          }
          stores.push(
            store.put(found).then(() => {
              figures.stored++;
              events.stored?.(task.entry, part10);
              events.progress?.(figures);
            }),
          );
        } else if (task.attempts > RETRIES) {
          failure = new ShareError(`instance ${task.entry.sop} failed verification ${task.attempts} times`);
        } else {
          task.attempts++;
          figures.refetched++;
          events.refetch?.(task.entry);
          wanted = Array.from({ length: task.entry.chunks }, (_, n) => [position, n]).concat(wanted);
        }
        mail.wake();
      },
      (error) => {
        failure = error;
        mail.wake();
      },
    );
    if (stores.length > 64) await Promise.all(stores.splice(0, 32));
  }
  await Promise.all(stores);
  send({ type: "done", stored: figures.stored, already: figures.already });
  await mail.next(5000); // "bye"; its absence changes nothing: everything is stored
  channel.close();
  if (figures.refused.length) {
    const which = figures.refused.map(([sop, reason]) => `${sop} (${reason})`).join("; ");
    throw new ShareError(`${figures.refused.length} instance(s) refused: ${which}`);
  }
  return figures;
}

/** The instance's bytes when they match the manifest's size and SHA-256, else null. */
async function verify(task) {
  const { entry, parts } = task;
  const part10 = new Uint8Array(entry.size);
  let offset = 0;
  for (let n = 0; n < entry.chunks; n++) {
    const data = parts.get(n);
    if (offset + data.length > entry.size) return null;
    part10.set(data, offset);
    offset += data.length;
  }
  parts.clear();
  if (offset !== entry.size) return null;
  return hex(await crypto.subtle.digest("SHA-256", part10)) === entry.sha256 ? part10 : null;
}

/**
 * {found: the IndexedDB record} of a verified instance when its header is the instance its
 * manifest entry names (SOP Instance UID) of the manifest's study (Study Instance UID), else
 * {reason}: the same rule as the node's receiver (docs/p2p.md, "Messages").
 */
function admit(part10, entry, study) {
  let found;
  try {
    found = record(part10);
  } catch (error) {
    return { reason: error.message };
  }
  if (found.sopInstanceUID !== entry.sop)
    return { reason: "its SOP Instance UID is not the one its manifest entry names" };
  if (found.studyInstanceUID !== study) return { reason: "its Study Instance UID is not the manifest's study" };
  return { found };
}

/** The IndexedDB record of a verified instance (the browser node's store). */
function record(part10) {
  const { datasetOffset, implicit, transferSyntaxUID } = readPart10(part10);
  const header = parseDataset(part10, { start: datasetOffset, implicit, stopAt: PIXEL_DATA });
  return { ...summarize(header, { transferSyntaxUID, sourceAET: "share link" }), part10 };
}
