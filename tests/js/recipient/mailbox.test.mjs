import assert from "node:assert/strict";
import { test } from "node:test";
import { Mailbox } from "../../../src/isthmus/viewer/recipient/mailbox.js";

/** A data channel as far as the mailbox sees it: an EventTarget of message and close. */
function fakeChannel() {
  const channel = new EventTarget();
  channel.deliver = (data) => channel.dispatchEvent(Object.assign(new Event("message"), { data }));
  channel.end = () => channel.dispatchEvent(new Event("close"));
  return channel;
}

test("messages that arrive before anyone asks are kept, in order", async () => {
  const channel = fakeChannel();
  const mail = new Mailbox(channel);
  channel.deliver('{"type": "manifest"}');
  channel.deliver("second");
  assert.deepEqual(await mail.next(1000), { data: '{"type": "manifest"}' });
  assert.deepEqual(await mail.next(1000), { data: "second" });
});

test("a waiting reader gets the next message, then the close", async () => {
  const channel = fakeChannel();
  const mail = new Mailbox(channel);
  const first = mail.next(1000);
  channel.deliver("chunk");
  assert.deepEqual(await first, { data: "chunk" });
  const second = mail.next(1000);
  channel.end();
  assert.deepEqual(await second, { closed: true });
  assert.equal(mail.closed, true);
});

test("silence ends in a timeout, and a wake returns a waiting reader", async () => {
  const mail = new Mailbox(fakeChannel());
  assert.deepEqual(await mail.next(5), { timeout: true });
  const waiting = mail.next(1000);
  mail.wake();
  assert.deepEqual(await waiting, { wake: true });
});
