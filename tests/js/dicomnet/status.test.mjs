// The one status table: DIMSE errors and the viewer's STOW-RS reasons read it.

import assert from "node:assert/strict";
import { test } from "node:test";

import { describeStatus, STATUS, statusCategory, statusText } from "../../../src/isthmus/viewer/dicomnet/status.js";

test("categories follow PS3.7 C.1", () => {
  assert.equal(statusCategory(STATUS.SUCCESS), "success");
  assert.equal(statusCategory(STATUS.PENDING_WARNING), "pending");
  assert.equal(statusCategory(STATUS.CANCEL), "cancel");
  assert.equal(statusCategory(0xb007), "warning");
  assert.equal(statusCategory(STATUS.OUT_OF_RESOURCES), "failure");
});

test("a code means what its service says", () => {
  assert.equal(statusText(0xb000, "C-STORE"), "coercion of data elements (0xB000)");
  assert.equal(statusText(0xb000, "C-MOVE"), "sub-operations complete, one or more failed (0xB000)");
  assert.equal(statusText(0xc122), "transfer syntax not supported (0xC122)");
  assert.equal(statusText(0xa7ff), "status 0xA7FF");
  assert.equal(statusText(null), "");
});

test("descriptions carry the category", () => {
  assert.equal(describeStatus(0xa700), "failure: out of resources (0xA700)");
  assert.equal(describeStatus(0x0000), "success (0x0000)");
  assert.equal(describeStatus(0xff00), "pending (0xFF00)");
  assert.equal(describeStatus(0xa7ff), "failure (0xA7FF)");
});
