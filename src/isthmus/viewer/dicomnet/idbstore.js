/**
 * Received instances in the browser's IndexedDB: one record per SOP Instance UID
 * holding the Part 10 bytes and the header fields a list needs.
 *
 * Writes are grouped: instances arriving while a transaction is open go into the
 * next one, and each caller's promise resolves only after the transaction that
 * holds its instance has completed (`oncomplete`), so a C-STORE success is never
 * answered for data that is not in the database.  Transactions are `strict`: Chromium
 * then fdatasyncs the file holding the bytes and its LevelDB log before `complete`
 * fires; `relaxed` (and `default`, which is `relaxed` in Chromium since 121) syncs
 * neither the bytes nor, always, the log (docs/dicom-websocket.md, "Durability in the
 * browser").
 */
import { TAGS } from "./dictionary.js";

export const DB_NAME = "isthmus-dicomnet";
const STORE = "instances";
const VERSION = 1;
/** The IndexedDB durability hint of every write (see above). */
export const DURABILITY = "strict";

/**
 * Settles when `tx` has completed (resolves) or failed (rejects, always with an Error:
 * a transaction aborted by abort() has no `error` of its own, and the failing request's
 * error is the one that says why).
 */
export function completion(tx) {
  return new Promise((resolve, reject) => {
    let why = null;
    tx.oncomplete = () => resolve();
    tx.onerror = (event) => {
      why ||= event?.target?.error || tx.error;
    };
    tx.onabort = () => reject(tx.error || why || new Error("IndexedDB transaction aborted"));
  });
}

function promisify(request) {
  return new Promise((resolve, reject) => {
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

/** The fields kept next to the bytes, from a parsed header. */
export function summarize(header, extra = {}) {
  return {
    sopInstanceUID: header.string(TAGS.SOPInstanceUID),
    sopClassUID: header.string(TAGS.SOPClassUID),
    studyInstanceUID: header.string(TAGS.StudyInstanceUID),
    seriesInstanceUID: header.string(TAGS.SeriesInstanceUID),
    patientName: header.string(TAGS.PatientName),
    patientID: header.string(TAGS.PatientID),
    studyDate: header.string(TAGS.StudyDate),
    studyDescription: header.string(TAGS.StudyDescription),
    seriesDescription: header.string(TAGS.SeriesDescription),
    modality: header.string(TAGS.Modality),
    seriesNumber: header.number(TAGS.SeriesNumber),
    instanceNumber: header.number(TAGS.InstanceNumber),
    rows: header.number(TAGS.Rows),
    columns: header.number(TAGS.Columns),
    ...extra,
  };
}

export class InstanceStore {
  constructor(name = DB_NAME, indexedDB = globalThis.indexedDB, { durability = DURABILITY } = {}) {
    this.name = name;
    this.indexedDB = indexedDB;
    this.durability = durability;
    this.db = null;
    this.queue = [];
    this.flushing = null;
    this.listeners = new Set();
  }

  async open() {
    if (this.db) return this;
    const request = this.indexedDB.open(this.name, VERSION);
    request.onupgradeneeded = () => {
      const store = request.result.createObjectStore(STORE, { keyPath: "sopInstanceUID" });
      store.createIndex("study", "studyInstanceUID");
      store.createIndex("receivedAt", "receivedAt");
    };
    this.db = await promisify(request);
    return this;
  }

  /** Subscribe to additions: fn(record without bytes). Returns an unsubscribe function. */
  onChange(fn) {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /** Store one instance ({...summary, part10: Uint8Array}); resolves once committed. */
  put(record) {
    return new Promise((resolve, reject) => {
      this.queue.push({ record, resolve, reject });
      if (!this.flushing) this.flushing = this.flush();
    });
  }

  async flush() {
    while (this.queue.length) {
      const batch = this.queue.splice(0);
      try {
        await this.write(batch.map((b) => b.record));
        for (const b of batch) b.resolve();
        for (const b of batch) for (const fn of this.listeners) fn(withoutBytes(b.record));
      } catch (error) {
        for (const b of batch) b.reject(error);
      }
    }
    this.flushing = null;
  }

  /** One transaction holding `records`; resolves once it completed, rejects if it did not. */
  write(records) {
    const tx = this.db.transaction(STORE, "readwrite", { durability: this.durability });
    const done = completion(tx);
    const store = tx.objectStore(STORE);
    try {
      for (const record of records)
        store.put({ ...record, size: record.part10.length, receivedAt: record.receivedAt || Date.now() });
    } catch (error) {
      // None of the batch is kept, and the put's own error is the one to report.
      done.catch(() => {});
      try {
        tx.abort();
      } catch {
        /* already aborted */
      }
      return Promise.reject(error);
    }
    return done;
  }

  /** Every record without its bytes, newest first. */
  async list() {
    const tx = this.db.transaction(STORE, "readonly");
    const out = [];
    await new Promise((resolve, reject) => {
      const request = tx.objectStore(STORE).openCursor();
      request.onsuccess = () => {
        const cursor = request.result;
        if (!cursor) {
          resolve();
          return;
        }
        out.push(withoutBytes(cursor.value));
        cursor.continue();
      };
      request.onerror = () => reject(request.error);
    });
    return out.sort((a, b) => b.receivedAt - a.receivedAt);
  }

  /** The SOP Instance UIDs held of one study (keys only: no bytes are read). */
  keys(studyInstanceUID) {
    const index = this.db.transaction(STORE, "readonly").objectStore(STORE).index("study");
    return promisify(index.getAllKeys(IDBKeyRange.only(studyInstanceUID)));
  }

  /** The full record, bytes included, or undefined. */
  get(sopInstanceUID) {
    return promisify(this.db.transaction(STORE, "readonly").objectStore(STORE).get(sopInstanceUID));
  }

  delete(sopInstanceUID) {
    const tx = this.db.transaction(STORE, "readwrite", { durability: this.durability });
    const done = completion(tx);
    tx.objectStore(STORE).delete(sopInstanceUID);
    return done;
  }

  clear() {
    const tx = this.db.transaction(STORE, "readwrite", { durability: this.durability });
    const done = completion(tx);
    tx.objectStore(STORE).clear();
    return done;
  }
}

function withoutBytes(record) {
  const { part10, ...rest } = record;
  return rest;
}
