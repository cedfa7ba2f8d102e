// Stack order, prefetch order and viewport geometry.

import assert from "node:assert/strict";
import { test } from "node:test";
import {
  apply,
  distance,
  fitZoom,
  initialView,
  invert,
  transform,
  zoomAbout,
} from "../../../src/isthmus/viewer/js/geometry.js";
import { buildStack, prefetchOrder } from "../../../src/isthmus/viewer/js/stack.js";

const inst = (uid, number, frames, z) => ({
  "00080018": { vr: "UI", Value: [uid] },
  ...(number === null ? {} : { "00200013": { vr: "IS", Value: [number] } }),
  ...(frames ? { "00280008": { vr: "IS", Value: [frames] } } : {}),
  ...(z === undefined
    ? {}
    : { "00200032": { vr: "DS", Value: [0, 0, z] }, "00200037": { vr: "DS", Value: [1, 0, 0, 0, 1, 0] } }),
});

test("instances are ordered by Instance Number and expand into their frames", () => {
  const stack = buildStack([inst("c", 10, 0), inst("a", 2, 3), inst("b", null, 0, 5), inst("d", 1, 0)]);
  assert.deepEqual(
    stack.map((s) => `${s.sopUid}:${s.frame}`),
    ["d:1", "a:1", "a:2", "a:3", "c:1", "b:1"],
  );
});

test("without Instance Numbers, slices follow their position", () => {
  const stack = buildStack([inst("x", null, 0, 3), inst("y", null, 0, -2), inst("z", null, 0, 1)]);
  assert.deepEqual(
    stack.map((s) => s.sopUid),
    ["y", "z", "x"],
  );
});

test("prefetch starts at the current image and works outward", () => {
  assert.deepEqual(prefetchOrder(6, 2), [2, 3, 1, 4, 0, 5]);
  assert.deepEqual(prefetchOrder(3, 0), [0, 1, 2]);
  assert.deepEqual(prefetchOrder(0, 0), []);
});

test("the fitted image fills the viewport's shorter side", () => {
  assert.equal(fitZoom({ columns: 512, rows: 512 }, { width: 1000, height: 800 }), 800 / 512);
  assert.equal(fitZoom({ columns: 200, rows: 100 }, { width: 100, height: 400 }, 1), 1);
  assert.equal(fitZoom({ columns: 200, rows: 100 }, { width: 100, height: 400 }, 0), 0.5);
});

test("the transform centres, rotates and flips, and inverts back", () => {
  const image = { columns: 100, rows: 50 };
  const vp = { width: 200, height: 200 };
  const view = { ...initialView(), zoom: 2 };
  const m = transform(view, image, vp);
  assert.deepEqual(apply(m, 50, 25), [100, 100], "image centre is viewport centre");
  assert.deepEqual(apply(m, 0, 0), [0, 50]);
  const rotated = transform({ ...view, rotation: 1 }, image, vp);
  const [x, y] = apply(rotated, 0, 0);
  assert.deepEqual([Math.round(x), Math.round(y)], [150, 0], "a quarter turn clockwise puts top-left at top-right");
  const flipped = transform({ ...view, flipH: true }, image, vp);
  assert.deepEqual(apply(flipped, 0, 0), [200, 50]);
  const back = apply(invert(rotated), ...apply(rotated, 12, 34));
  assert.ok(Math.abs(back[0] - 12) < 1e-9 && Math.abs(back[1] - 34) < 1e-9);
});

test("zooming about a point keeps that point still", () => {
  const image = { columns: 100, rows: 100 };
  const vp = { width: 100, height: 100 };
  const view = initialView();
  const before = invert(transform(view, image, vp));
  const zoomed = zoomAbout(view, 2, [80, 30], vp);
  const after = invert(transform(zoomed, image, vp));
  const p = apply(before, 80, 30);
  const q = apply(after, 80, 30);
  assert.ok(Math.abs(p[0] - q[0]) < 1e-9 && Math.abs(p[1] - q[1]) < 1e-9);
});

test("lengths use row and column spacing", () => {
  assert.deepEqual(distance([0, 0], [10, 0], [0.5, 0.7]), { value: 7, unit: "mm" });
  assert.deepEqual(distance([0, 0], [0, 10], [0.5, 0.7]), { value: 5, unit: "mm" });
  assert.deepEqual(distance([0, 0], [3, 4], null), { value: 5, unit: "px" });
});
