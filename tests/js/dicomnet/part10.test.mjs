// Reading a Part 10 file's meta information (the viewer before upload and in a ZIP download).

import assert from "node:assert/strict";
import { test } from "node:test";

import { readFileMeta, readPart10, toPart10 } from "../../../src/isthmus/viewer/dicomnet/part10.js";

function element(group, element, vr, value) {
  const bytes = new TextEncoder().encode(value.length % 2 ? `${value}\0` : value);
  const long = ["OB", "UN"].includes(vr);
  const head = new DataView(new ArrayBuffer(long ? 12 : 8));
  head.setUint16(0, group, true);
  head.setUint16(2, element, true);
  head.setUint8(4, vr.charCodeAt(0));
  head.setUint8(5, vr.charCodeAt(1));
  if (long) head.setUint32(8, bytes.length, true);
  else head.setUint16(6, bytes.length, true);
  return [new Uint8Array(head.buffer), bytes];
}

function part10(elements) {
  const parts = [new Uint8Array(128), new TextEncoder().encode("DICM"), ...elements.flat()];
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

test("the SOP instance and transfer syntax are read from group 0002", () => {
  const bytes = part10([
    element(2, 1, "OB", "\0\x01"),
    element(2, 2, "UI", "1.2.840.10008.5.1.4.1.1.2"),
    element(2, 3, "UI", "1.2.3.4.5"),
    element(2, 0x10, "UI", "1.2.840.10008.1.2.1"),
    element(8, 0x16, "UI", "ignored"),
  ]);
  assert.deepEqual(readFileMeta(bytes), {
    sopClass: "1.2.840.10008.5.1.4.1.1.2",
    sopInstance: "1.2.3.4.5",
    transferSyntax: "1.2.840.10008.1.2.1",
  });
});

test("bytes without the DICM prefix are not Part 10", () => {
  assert.equal(readFileMeta(new Uint8Array(200)), null);
  assert.equal(readFileMeta(new TextEncoder().encode("hello")), null);
});

test("a file this library writes, group length and all, reads back", () => {
  const meta = {
    sopClassUID: "1.2.840.10008.5.1.4.1.1.7",
    sopInstanceUID: "1.2.3",
    transferSyntaxUID: "1.2.840.10008.1.2",
  };
  const bytes = toPart10(new Uint8Array([8, 0, 0x18, 0, 2, 0, 0, 0, 0x31, 0]), meta);
  assert.deepEqual(readFileMeta(bytes), {
    sopClass: meta.sopClassUID,
    sopInstance: "1.2.3",
    transferSyntax: "1.2.840.10008.1.2",
  });
  assert.equal(readPart10(bytes).datasetOffset, bytes.length - 10);
  assert.equal(readFileMeta(bytes.subarray(0, 150)), null);
});
