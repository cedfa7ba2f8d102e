// InstanceStore's transaction bookkeeping, on a transaction-shaped object: IndexedDB
// itself runs only in the browser (tests/web/test_dicom_ws_browser.py stores and fails
// real transactions).
import assert from "node:assert/strict";
import { test } from "node:test";
import { completion, DURABILITY, InstanceStore } from "../../../src/isthmus/viewer/dicomnet/idbstore.js";

/** What completion() sees of an IDBTransaction: its handlers and its error. */
function transaction() {
  return { error: null, oncomplete: null, onerror: null, onabort: null };
}

test("completion resolves when the transaction completes", async () => {
  const tx = transaction();
  const done = completion(tx);
  tx.oncomplete();
  assert.equal(await done, undefined);
});

test("an aborted transaction without an error of its own rejects with its failing request's error", async () => {
  const tx = transaction();
  const done = completion(tx);
  const why = new Error("QuotaExceededError: the disk is full");
  tx.onerror({ target: { error: why } });
  tx.onabort();
  await assert.rejects(done, why);
});

test("an abort that nothing explains still rejects with an Error, never null", async () => {
  const tx = transaction();
  const done = completion(tx);
  tx.onabort();
  await assert.rejects(done, (error) => error instanceof Error && /aborted/.test(error.message));
});

test("the transaction's own error wins over a request's", async () => {
  const tx = transaction();
  const done = completion(tx);
  tx.onerror({ target: { error: new Error("request") } });
  tx.error = new Error("transaction");
  tx.onabort();
  await assert.rejects(done, /transaction/);
});

test("the store's writes ask for strict durability unless told otherwise", () => {
  assert.equal(DURABILITY, "strict");
  assert.equal(new InstanceStore("x", {}).durability, "strict");
  assert.equal(new InstanceStore("x", {}, { durability: "relaxed" }).durability, "relaxed");
});
