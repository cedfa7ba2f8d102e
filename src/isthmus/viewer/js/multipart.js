// multipart/related bodies (RFC 2387, RFC 2046 5.1) as WADO-RS returns them (PS3.18 8.6.1.2).

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** The parameters of a media type: `multipart/related; type="a/b"; boundary=x` → {type, boundary}. */
export function mediaTypeParams(contentType) {
  const params = {};
  const parts = splitParams(String(contentType ?? ""));
  params[""] = (parts.shift() ?? "").trim().toLowerCase();
  for (const p of parts) {
    const eq = p.indexOf("=");
    if (eq < 0) continue;
    const key = p.slice(0, eq).trim().toLowerCase();
    let val = p.slice(eq + 1).trim();
    if (val.startsWith('"') && val.endsWith('"')) val = val.slice(1, -1).replace(/\\(.)/g, "$1");
    params[key] = val;
  }
  return params;
}

function splitParams(s) {
  const out = [];
  let cur = "";
  let quoted = false;
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (c === '"' && s[i - 1] !== "\\") quoted = !quoted;
    if (c === ";" && !quoted) {
      out.push(cur);
      cur = "";
    } else cur += c;
  }
  out.push(cur);
  return out;
}

/** Index of `needle` in `hay` at or after `from` (Boyer-Moore-Horspool), or -1. */
export function indexOfBytes(hay, needle, from = 0) {
  const n = needle.length;
  const last = n - 1;
  if (n === 0) return from;
  const skip = new Map();
  for (let i = 0; i < last; i++) skip.set(needle[i], last - i);
  let pos = from;
  while (pos + last < hay.length) {
    let k = last;
    while (k >= 0 && hay[pos + k] === needle[k]) k--;
    if (k < 0) return pos;
    pos += skip.get(hay[pos + last]) ?? n;
  }
  return -1;
}

function parseHeaders(bytes) {
  const headers = {};
  for (const line of decoder.decode(bytes).split("\r\n")) {
    const colon = line.indexOf(":");
    if (colon > 0) headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  return headers;
}

/**
 * Incremental parser: push() chunks as they arrive, get back the parts completed so far
 * (each {headers, body}), then end(). Memory holds at most one part plus one chunk.
 */
export class MultipartParser {
  constructor(boundary) {
    if (!boundary) throw new Error("multipart response without a boundary");
    this.delimiter = encoder.encode(`\r\n--${boundary}`);
    this.store = new Uint8Array(0);
    this.head = 0;
    this.tail = 0;
    this.scanned = 0; // bytes of the current body already searched for the delimiter
    this.state = "preamble";
    this.done = false;
    this.headers = null;
  }

  get buffer() {
    return this.store.subarray(this.head, this.tail);
  }

  set buffer(view) {
    this.head = view.byteOffset - this.store.byteOffset;
    this.tail = this.head + view.length;
  }

  /** Append a chunk, compacting or growing the store (amortised linear time). */
  append(chunk) {
    const bytes = chunk instanceof Uint8Array ? chunk : new Uint8Array(chunk);
    const used = this.tail - this.head;
    if (this.tail + bytes.length > this.store.length) {
      const size = Math.max(used + bytes.length, this.store.length * 2, 65536);
      const grown = used + bytes.length > this.store.length ? new Uint8Array(size) : this.store;
      if (grown === this.store) grown.copyWithin(0, this.head, this.tail);
      else grown.set(this.store.subarray(this.head, this.tail), 0);
      this.store = grown;
      this.head = 0;
      this.tail = used;
    }
    this.store.set(bytes, this.tail);
    this.tail += bytes.length;
  }

  push(chunk) {
    this.append(chunk);
    const parts = [];
    for (;;) {
      if (this.done) return parts;
      if (this.state === "preamble") {
        // The first delimiter may start the body without a leading CRLF.
        const first = this.delimiter.subarray(2);
        const at = startsWith(this.buffer, first) ? 0 : indexOfBytes(this.buffer, this.delimiter);
        if (at < 0) {
          this.keepTail(this.delimiter.length);
          return parts;
        }
        const skip = at === 0 && startsWith(this.buffer, first) ? first.length : at + this.delimiter.length;
        this.buffer = this.buffer.subarray(skip);
        this.state = "after-delimiter";
      }
      if (this.state === "after-delimiter") {
        if (this.buffer.length < 2) return parts;
        if (this.buffer[0] === 45 && this.buffer[1] === 45) {
          this.done = true;
          return parts;
        }
        const eol = indexOfBytes(this.buffer, CRLF);
        if (eol < 0) return parts;
        this.buffer = this.buffer.subarray(eol + 2);
        this.state = "headers";
      }
      if (this.state === "headers") {
        if (startsWith(this.buffer, CRLF)) {
          this.headers = {};
          this.buffer = this.buffer.subarray(2);
        } else {
          const end = indexOfBytes(this.buffer, CRLFCRLF);
          if (end < 0) return parts;
          this.headers = parseHeaders(this.buffer.subarray(0, end));
          this.buffer = this.buffer.subarray(end + 4);
        }
        this.state = "body";
      }
      if (this.state === "body") {
        const from = Math.max(0, this.scanned - this.delimiter.length + 1);
        const end = indexOfBytes(this.buffer, this.delimiter, from);
        if (end < 0) {
          this.scanned = this.buffer.length;
          return parts;
        }
        parts.push({ headers: this.headers, body: this.buffer.slice(0, end) });
        this.buffer = this.buffer.subarray(end + this.delimiter.length);
        this.scanned = 0;
        this.state = "after-delimiter";
      }
    }
  }

  keepTail(n) {
    if (this.buffer.length > n) this.buffer = this.buffer.subarray(this.buffer.length - n);
  }

  /** Check the body was complete (a closing delimiter was seen). */
  end() {
    if (!this.done) throw new Error("multipart body ended before its closing boundary");
  }
}

const CRLF = Uint8Array.of(13, 10);
const CRLFCRLF = Uint8Array.of(13, 10, 13, 10);

function startsWith(bytes, prefix) {
  if (bytes.length < prefix.length) return false;
  for (let i = 0; i < prefix.length; i++) if (bytes[i] !== prefix[i]) return false;
  return true;
}

/** Parse a whole multipart body at once. */
export function parseMultipart(bytes, contentType) {
  const { boundary } = mediaTypeParams(contentType);
  const parser = new MultipartParser(boundary);
  const parts = parser.push(bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes));
  parser.end();
  return parts;
}

/** Build a multipart/related body (for STOW-RS): returns {body: Blob-parts array, contentType}. */
export function multipartBody(parts, type, boundary = randomBoundary()) {
  const chunks = [];
  for (const part of parts) {
    chunks.push(encoder.encode(`\r\n--${boundary}\r\nContent-Type: ${part.type ?? type}\r\n\r\n`));
    chunks.push(part.body);
  }
  chunks.push(encoder.encode(`\r\n--${boundary}--\r\n`));
  return { chunks, contentType: `multipart/related; type="${type}"; boundary=${boundary}` };
}

export function randomBoundary() {
  const bytes = new Uint8Array(16);
  globalThis.crypto.getRandomValues(bytes);
  return `isthmus-${Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("")}`;
}
