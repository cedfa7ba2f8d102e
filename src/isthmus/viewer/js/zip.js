// The study ZIP: client-zip (vendor/client-zip.js) writes the archive (stored entries, UTF-8
// names, ZIP64 when needed, streamed); this adapter feeds it one file at a time as the
// instances arrive, so no more than the file being written is held, and names the entries.

import { makeZip } from "../vendor/client-zip.js";

/**
 * Writes a ZIP to `sink(chunk)` (which may return a promise, e.g. a file stream's write):
 * add() each file (it resolves once the writer has taken it), then finish().
 */
export class ZipWriter {
  #queue = [];
  #wake = null;
  #closed = false;
  #names = new Set();
  #size = 0;
  #written;

  constructor(sink, now = new Date()) {
    const files = async function* (writer) {
      for (;;) {
        const next = writer.#queue.shift();
        if (next) {
          next.taken();
          yield { name: next.name, input: next.data, lastModified: now };
        } else if (writer.#closed) {
          return;
        } else {
          await new Promise((resolve) => {
            writer.#wake = resolve;
          });
        }
      }
    };
    const reader = makeZip(files(this)).getReader();
    this.#written = (async () => {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) return;
        await sink(value);
        this.#size += value.length;
      }
    })();
    this.#written.catch(() => {}); // reported by add() and finish()
  }

  /** Add one stored file; a repeated name gets a numeric suffix. Resolves to the name used. */
  add(name, data) {
    const unique = this.#unique(name);
    return new Promise((resolve, reject) => {
      this.#queue.push({ name: unique, data, taken: () => resolve(unique) });
      this.#poke();
      this.#written.catch(reject);
    });
  }

  /** Write the central directory and end records; resolves to the archive's total size. */
  async finish() {
    this.#closed = true;
    this.#poke();
    await this.#written;
    return this.#size;
  }

  #poke() {
    const wake = this.#wake;
    this.#wake = null;
    wake?.();
  }

  #unique(name) {
    let candidate = name;
    for (let i = 2; this.#names.has(candidate); i++) {
      const dot = name.lastIndexOf(".");
      candidate = dot > 0 ? `${name.slice(0, dot)}_${i}${name.slice(dot)}` : `${name}_${i}`;
    }
    this.#names.add(candidate);
    return candidate;
  }
}

/** A file or folder name without characters that file systems refuse. */
export function safeName(text, fallback = "unnamed") {
  const cleaned = String(text ?? "")
    .replace(/[\\/:*?"<>|\p{Cc}]+/gu, "_")
    .replace(/^[.\s]+|[.\s]+$/g, "")
    .slice(0, 80);
  return cleaned || fallback;
}
