// multipart/related parsing of WADO-RS responses, whole and in arbitrary chunks.

import assert from "node:assert/strict";
import { test } from "node:test";

import {
  MultipartParser,
  mediaTypeParams,
  multipartBody,
  parseMultipart,
} from "../../../src/isthmus/viewer/js/multipart.js";

const enc = new TextEncoder();

function body(boundary, parts, { preamble = "", leadingCrlf = false } = {}) {
  const s = preamble + (leadingCrlf ? "\r\n" : "");
  const chunks = [];
  parts.forEach((p, i) => {
    chunks.push(
      enc.encode(
        `${i || leadingCrlf ? "\r\n" : ""}--${boundary}\r\nContent-Type: application/octet-stream\r\nContent-Location: /f/${i}\r\n\r\n`,
      ),
    );
    chunks.push(p);
  });
  chunks.push(enc.encode(`\r\n--${boundary}--\r\n`));
  const total = chunks.reduce((n, c) => n + c.length, 0) + s.length;
  const out = new Uint8Array(total);
  out.set(enc.encode(s), 0);
  let at = s.length;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

test("media type parameters, quoted or not", () => {
  const p = mediaTypeParams('multipart/related; type="application/octet-stream"; boundary="a; b"');
  assert.equal(p[""], "multipart/related");
  assert.equal(p.type, "application/octet-stream");
  assert.equal(p.boundary, "a; b");
  assert.equal(mediaTypeParams("multipart/related;boundary=xyz").boundary, "xyz");
});

test("parts come back byte-exact with their headers", () => {
  const a = Uint8Array.from({ length: 1000 }, (_, i) => i % 256);
  const b = enc.encode("\r\n--notquite\r\n");
  const parts = parseMultipart(body("XyZ", [a, b]), "multipart/related; boundary=XyZ");
  assert.equal(parts.length, 2);
  assert.deepEqual(parts[0].body, a);
  assert.deepEqual(parts[1].body, b);
  assert.equal(parts[1].headers["content-location"], "/f/1");
  assert.equal(parts[0].headers["content-type"], "application/octet-stream");
});

test("a preamble before the first boundary is skipped", () => {
  const parts = parseMultipart(
    body("b1", [enc.encode("x")], { preamble: "ignore me", leadingCrlf: true }),
    "multipart/related; boundary=b1",
  );
  assert.deepEqual(Array.from(parts[0].body), [120]);
});

test("chunked input gives the same parts as whole input", () => {
  const payloads = [1, 7000, 0, 300].map((n, k) => Uint8Array.from({ length: n }, (_, i) => (i * 31 + k) % 251));
  const whole = body("boundary-123", payloads);
  for (const size of [1, 3, 17, 4096]) {
    const parser = new MultipartParser("boundary-123");
    const got = [];
    for (let i = 0; i < whole.length; i += size) got.push(...parser.push(whole.subarray(i, i + size)));
    parser.end();
    assert.equal(got.length, payloads.length, `chunk size ${size}`);
    for (const [i, p] of got.entries()) assert.deepEqual(p.body, payloads[i]);
  }
});

test("a body cut before its closing boundary is an error", () => {
  const whole = body("q", [enc.encode("abc")]);
  const parser = new MultipartParser("q");
  parser.push(whole.subarray(0, whole.length - 10));
  assert.throws(() => parser.end(), /closing boundary/);
});

test("a body built for STOW-RS parses back", () => {
  const { chunks, contentType } = multipartBody(
    [{ body: enc.encode("one") }, { body: enc.encode("two") }],
    "application/dicom",
  );
  const total = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const c of chunks) {
    total.set(c, at);
    at += c.length;
  }
  assert.match(contentType, /^multipart\/related; type="application\/dicom"; boundary=isthmus-/);
  const parts = parseMultipart(total, contentType);
  assert.deepEqual(
    parts.map((p) => new TextDecoder().decode(p.body)),
    ["one", "two"],
  );
  assert.equal(parts[0].headers["content-type"], "application/dicom");
});
