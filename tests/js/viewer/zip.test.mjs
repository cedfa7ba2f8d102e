// The ZIP writer: checked against the format's own records, and against Python's zipfile.

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";

import { safeName, ZipWriter } from "../../../src/isthmus/viewer/js/zip.js";

async function build(files) {
  const chunks = [];
  const zip = new ZipWriter((c) => {
    chunks.push(c);
  });
  const names = [];
  for (const [name, data] of files) names.push(await zip.add(name, data));
  const size = await zip.finish();
  const out = new Uint8Array(size);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return { out, names };
}

test("entries are stored with names, sizes and an end record", async () => {
  const { out, names } = await build([
    ["a/one.dcm", Uint8Array.of(1, 2, 3)],
    ["a/one.dcm", Uint8Array.of(4)],
  ]);
  assert.deepEqual(names, ["a/one.dcm", "a/one_2.dcm"]);
  const view = new DataView(out.buffer);
  assert.equal(view.getUint32(0, true), 0x04034b50);
  const end = out.length - 22;
  assert.equal(view.getUint32(end, true), 0x06054b50);
  assert.equal(view.getUint16(end + 10, true), 2);
});

test("Python's zipfile reads the archive back byte-exact", async (t) => {
  const payload = Uint8Array.from({ length: 5000 }, (_, i) => (i * 7) % 256);
  const { out } = await build([
    ["Série 1/IMG0001.dcm", payload],
    ["empty.txt", new Uint8Array(0)],
  ]);
  const dir = mkdtempSync(join(tmpdir(), "zip-"));
  const path = join(dir, "t.zip");
  writeFileSync(path, out);
  const python = "python3";
  try {
    execFileSync(python, ["--version"]);
  } catch {
    t.skip("no python3");
    return;
  }
  const script =
    "import sys,zipfile,hashlib;z=zipfile.ZipFile(sys.argv[1]);assert z.testzip() is None;" +
    "print(sorted((i.filename,i.file_size,hashlib.sha256(z.read(i)).hexdigest()[:8]) for i in z.infolist()))";
  const listing = execFileSync(python, ["-c", script, path]).toString();
  assert.match(listing, /'Série 1\/IMG0001.dcm', 5000/);
  assert.match(listing, /'empty.txt', 0/);
});

test("safe names drop path separators and control characters", () => {
  assert.equal(safeName("CT/CHEST: a*b"), "CT_CHEST_ a_b");
  assert.equal(safeName("  "), "unnamed");
  assert.equal(safeName("..", "x"), "x");
});
