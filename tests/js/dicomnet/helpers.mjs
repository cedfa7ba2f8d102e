// Shared by the dicomnet tests: captured DCMTK PDUs and in-memory transports.
import fs from "node:fs";
import { fileURLToPath } from "node:url";
import { fromHex } from "../../../src/isthmus/viewer/dicomnet/bytes.js";

const here = fileURLToPath(new URL(".", import.meta.url));

/** {scenario: [{from: 'scu'|'scp', bytes}]} plus storeFile (the file storescu sent). */
export function dcmtkCapture() {
  const raw = JSON.parse(fs.readFileSync(`${here}/fixtures/dcmtk-pdus.json`, "utf8"));
  const out = {};
  for (const [name, value] of Object.entries(raw)) {
    if (Array.isArray(value)) out[name] = value.map((p) => ({ from: p.from, bytes: fromHex(p.hex) }));
  }
  out.storeFile = fromHex(raw.store_file);
  return out;
}

/** One end of an in-memory connection that delivers whole PDUs asynchronously, in order. */
export class MemoryTransport {
  constructor() {
    this.peer = null;
    this.handlers = null;
    this.sent = [];
    this.closed = false;
  }

  connect(handlers) {
    this.handlers = handlers;
    setImmediate(() => {
      if (!this.closed) handlers.open();
    });
  }

  send(bytes) {
    if (this.closed) return;
    const copy = bytes.slice();
    this.sent.push(copy);
    setImmediate(() => {
      if (this.peer && !this.peer.closed && this.peer.handlers) this.peer.handlers.pdu(copy);
    });
  }

  close() {
    if (this.closed) return;
    this.closed = true;
    setImmediate(() => {
      this.handlers?.closed({ code: 1000 });
      if (this.peer && !this.peer.closed) {
        this.peer.closed = true;
        this.peer.handlers?.closed({ code: 1000, reason: "peer closed" });
      }
    });
  }
}

export function transportPair() {
  const a = new MemoryTransport();
  const b = new MemoryTransport();
  a.peer = b;
  b.peer = a;
  return [a, b];
}

/** A transport the test drives by hand: it feeds PDUs and waits for what the association sends. */
export class ScriptedTransport {
  constructor() {
    this.handlers = null;
    this.sent = [];
    this.waiters = [];
    this.closed = false;
  }

  connect(handlers) {
    this.handlers = handlers;
    setImmediate(() => handlers.open());
  }

  send(bytes) {
    this.sent.push(bytes.slice());
    for (const w of this.waiters.splice(0)) w();
  }

  close() {
    this.closed = true;
    for (const w of this.waiters.splice(0)) w();
  }

  feed(bytes) {
    this.handlers.pdu(bytes);
  }

  peerCloses() {
    this.handlers.closed({ code: 1000 });
  }

  /** Resolves once at least n PDUs have been sent. */
  async waitSent(n) {
    while (this.sent.length < n)
      await new Promise((resolve) => {
        this.waiters.push(resolve);
      });
    return this.sent[n - 1];
  }
}

export const tick = () => new Promise((resolve) => setImmediate(resolve));
