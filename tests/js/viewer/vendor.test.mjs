// Vendored libraries are the versions package-lock.json pins (scripts/vendor-js.sh copies them).

import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { test } from "node:test";

const root = new URL("../../../", import.meta.url);
const lock = JSON.parse(readFileSync(new URL("package-lock.json", root), "utf8"));
const VENDORED = { "client-zip": ["src/isthmus/viewer/vendor/client-zip.js", "index.js"] };

for (const [name, [path, file]] of Object.entries(VENDORED)) {
  test(`${path} is ${name} as pinned`, () => {
    const version = lock.packages[`node_modules/${name}`].version;
    const text = readFileSync(new URL(path, root), "utf8");
    assert.ok(text.startsWith(`/*! ${name} ${version} `), `run scripts/vendor-js.sh (want ${version})`);
    const source = new URL(`node_modules/${name}/${file}`, root);
    if (existsSync(source)) assert.ok(text.includes(readFileSync(source, "utf8")), "run scripts/vendor-js.sh");
  });
}
