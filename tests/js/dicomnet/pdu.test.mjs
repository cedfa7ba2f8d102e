import assert from "node:assert/strict";
import { test } from "node:test";
import {
  CONTEXT_RESULT,
  decodePDU,
  describeReject,
  encodePDU,
  PDU_TYPE,
  PDUError,
  PDUFramer,
} from "../../../src/isthmus/viewer/dicomnet/pdu.js";
import { dcmtkCapture } from "./helpers.mjs";

const capture = dcmtkCapture();
const allCaptured = ["echo", "echo_abort", "refused", "store"].flatMap((name) => capture[name]);

/** DCMTK writes 0xFF into the reserved byte 3 of each A-ASSOCIATE-RQ presentation context item. */
function zeroReservedPCBytes(bytes) {
  const out = bytes.slice();
  let offset = 74;
  while (offset < out.length) {
    const type = out[offset];
    const length = (out[offset + 2] << 8) | out[offset + 3];
    if (type === 0x20) out[offset + 6] = 0;
    offset += 4 + length;
  }
  return out;
}

test("every PDU type DCMTK sent decodes and re-encodes to the same bytes", () => {
  const seen = new Set();
  for (const { bytes } of allCaptured) {
    const pdu = decodePDU(bytes);
    seen.add(pdu.type);
    const expected = pdu.type === PDU_TYPE.ASSOCIATE_RQ ? zeroReservedPCBytes(bytes) : bytes;
    assert.deepEqual(encodePDU(pdu), expected, `PDU type ${pdu.type}`);
  }
  assert.deepEqual([...seen].sort(), [1, 2, 3, 4, 5, 6, 7]);
});

test("the DCMTK A-ASSOCIATE-RQ decodes to its fields", () => {
  const rq = decodePDU(capture.store[0].bytes);
  assert.equal(rq.calledAET, "STORESCP");
  assert.equal(rq.callingAET, "STORESCU");
  assert.equal(rq.applicationContext, "1.2.840.10008.3.1.1.1");
  assert.equal(rq.presentationContexts.length, 128);
  assert.equal(rq.userInfo.maxLength, 16384);
  assert.equal(rq.userInfo.implementationVersionName, "OFFIS_DCMTK_367");
  assert.ok(rq.presentationContexts.every((pc) => pc.id % 2 === 1));
  const ac = decodePDU(capture.store[1].bytes);
  assert.equal(ac.userInfo.maxLength, 4096);
  assert.ok(ac.presentationContexts.some((pc) => pc.result === CONTEXT_RESULT.ACCEPTANCE));
});

test("the DCMTK A-ASSOCIATE-RJ says it was the service user, permanently", () => {
  const rj = decodePDU(capture.refused[1].bytes);
  assert.deepEqual(rj, { type: PDU_TYPE.ASSOCIATE_RJ, result: 1, source: 1, reason: 1 });
  assert.match(describeReject(rj), /permanent.*service user.*no reason/);
});

test("all seven PDU types built here round trip", () => {
  const pdus = [
    {
      type: PDU_TYPE.ASSOCIATE_RQ,
      protocolVersion: 1,
      calledAET: "ARCHIVE",
      callingAET: "BROWSER",
      applicationContext: "1.2.840.10008.3.1.1.1",
      presentationContexts: [
        { id: 1, abstractSyntax: "1.2.840.10008.1.1", transferSyntaxes: ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"] },
        { id: 3, abstractSyntax: "1.2.840.10008.5.1.4.1.1.2", transferSyntaxes: ["1.2.840.10008.1.2.4.50"] },
      ],
      userInfo: {
        maxLength: 65536,
        implementationClassUID: "1.2.3.4",
        implementationVersionName: "TEST_1",
        asyncOps: { invoked: 1, performed: 1 },
        roles: [{ sopClass: "1.2.840.10008.5.1.4.1.1.2", scu: false, scp: true }],
        extended: [{ sopClass: "1.2.840.10008.5.1.4.1.2.2.1", info: new Uint8Array([1, 0]) }],
        other: [{ type: 0x58, data: new Uint8Array([1, 0, 0, 4, 0x75, 0x73, 0x65, 0x72, 0, 0]) }],
      },
    },
    {
      type: PDU_TYPE.ASSOCIATE_AC,
      protocolVersion: 1,
      calledAET: "ARCHIVE",
      callingAET: "BROWSER",
      applicationContext: "1.2.840.10008.3.1.1.1",
      presentationContexts: [
        { id: 1, result: 0, transferSyntax: "1.2.840.10008.1.2.1" },
        { id: 3, result: 4, transferSyntax: "" },
      ],
      userInfo: { maxLength: 0, implementationClassUID: "1.2.3.4", roles: [], extended: [], other: [] },
    },
    { type: PDU_TYPE.ASSOCIATE_RJ, result: 2, source: 3, reason: 1 },
    {
      type: PDU_TYPE.P_DATA_TF,
      pdvs: [
        { contextId: 1, isCommand: true, isLast: true, data: new Uint8Array([1, 2, 3, 4]) },
        { contextId: 1, isCommand: false, isLast: false, data: new Uint8Array([5, 6]) },
      ],
    },
    { type: PDU_TYPE.RELEASE_RQ },
    { type: PDU_TYPE.RELEASE_RP },
    { type: PDU_TYPE.ABORT, source: 2, reason: 6 },
  ];
  for (const pdu of pdus) {
    const decoded = decodePDU(encodePDU(pdu));
    if (pdu.type === PDU_TYPE.P_DATA_TF)
      decoded.pdvs.forEach((p) => {
        p.data = Uint8Array.from(p.data);
      });
    assert.deepEqual(decoded, pdu);
  }
});

test("malformed PDUs are refused with a reason", () => {
  const good = capture.echo[0].bytes;
  const pdu = (...bytes) => Uint8Array.from(bytes);
  const evenId = good.slice();
  evenId[74 + 25 + 4] = 2; // ID of the first presentation context (after the 25-byte application context item)
  const noUserInfo = good.slice(0, good.length - 62);
  new DataView(noUserInfo.buffer).setUint32(2, noUserInfo.length - 6);
  const badAET = good.slice();
  badAET[10] = 0x5c; // backslash in the called AE title
  const cases = [
    ["unknown PDU type", pdu(0x09, 0, 0, 0, 0, 4, 0, 0, 0, 0), /unknown PDU type 0x09/],
    ["length disagreeing with the bytes", pdu(0x05, 0, 0, 0, 0, 5, 0, 0, 0, 0), /says 11 bytes but has 10/],
    ["truncated header", pdu(0x01, 0, 0), /shorter than its header/],
    ["A-RELEASE-RQ of the wrong size", pdu(0x05, 0, 0, 0, 0, 6, 0, 0, 0, 0, 0, 0), /must be 10 bytes/],
    ["A-ASSOCIATE-RJ with an invalid source", pdu(0x03, 0, 0, 0, 0, 4, 0, 1, 9, 1), /source 9 is not valid/],
    ["P-DATA-TF without PDVs", pdu(0x04, 0, 0, 0, 0, 0), /carries no PDV/],
    ["PDV overrunning the PDU", pdu(0x04, 0, 0, 0, 0, 7, 0, 0, 0, 9, 1, 3, 0), /overruns the PDU/],
    ["PDV with reserved control bits", pdu(0x04, 0, 0, 0, 0, 7, 0, 0, 0, 3, 1, 0x13, 0), /reserved bits/],
    ["even presentation context ID", evenId, /ID 2 is not odd/],
    ["A-ASSOCIATE-RQ without user information", noUserInfo, /no user information item/],
    ["backslash in an AE title", badAET, /called AE title contains a byte 0x5c/],
  ];
  for (const [what, bytes, message] of cases) {
    assert.throws(
      () => decodePDU(bytes),
      (err) => err instanceof PDUError && message.test(err.message),
      what,
    );
  }
});

test("the framer cuts a TCP-like byte stream back into the PDUs, however it is chunked", () => {
  const pdus = capture.store.map((p) => p.bytes);
  const stream = new Uint8Array(pdus.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const p of pdus) {
    stream.set(p, offset);
    offset += p.length;
  }
  for (const chunkSize of [1, 5, 6, 7, 1000, 4096, stream.length]) {
    const framer = new PDUFramer();
    const out = [];
    for (let i = 0; i < stream.length; i += chunkSize) out.push(...framer.push(stream.subarray(i, i + chunkSize)));
    assert.deepEqual(out, pdus, `chunks of ${chunkSize}`);
  }
});

test("the framer refuses a PDU above its limit before buffering it", () => {
  const framer = new PDUFramer(1024);
  assert.throws(() => framer.push(Uint8Array.from([0x04, 0, 0, 0x10, 0, 0])), /exceeds the limit/);
});
