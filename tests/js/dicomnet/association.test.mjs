import assert from "node:assert/strict";
import { test } from "node:test";
import { storageNodePolicy } from "../../../src/isthmus/viewer/dicomnet/acceptor.js";
import { Association } from "../../../src/isthmus/viewer/dicomnet/association.js";
import { concat } from "../../../src/isthmus/viewer/dicomnet/bytes.js";
import { encodeElements, PIXEL_DATA } from "../../../src/isthmus/viewer/dicomnet/dataset.js";
import { TAGS } from "../../../src/isthmus/viewer/dicomnet/dictionary.js";
import { COMMAND, decodeCommand, encodeCommand } from "../../../src/isthmus/viewer/dicomnet/dimse.js";
import { acceptContexts } from "../../../src/isthmus/viewer/dicomnet/negotiation.js";
import { readPart10 } from "../../../src/isthmus/viewer/dicomnet/part10.js";
import { decodePDU, encodePDU, PDU_TYPE } from "../../../src/isthmus/viewer/dicomnet/pdu.js";
import { DimseService } from "../../../src/isthmus/viewer/dicomnet/service.js";
import { echo, echoHandler, proposalsFor, store, storeHandler } from "../../../src/isthmus/viewer/dicomnet/services.js";
import { SOP, TS } from "../../../src/isthmus/viewer/dicomnet/uids.js";
import { dcmtkCapture, ScriptedTransport, tick, transportPair } from "./helpers.mjs";

const capture = dcmtkCapture();
const acceptAll = (rq) => ({
  contexts: acceptContexts(rq.presentationContexts, () => [TS.EXPLICIT_LE, TS.IMPLICIT_LE]),
});

async function connectedPair({ acceptorOptions = {}, requestorOptions = {}, proposals } = {}) {
  const [a, b] = transportPair();
  const acceptor = Association.accept(b, { onAssociateRequest: acceptAll, ...acceptorOptions });
  const requestor = await Association.request(a, {
    callingAET: "BROWSER",
    calledAET: "PEER",
    proposals: proposals || proposalsFor({ echo: true, storage: [SOP.CT_IMAGE] }),
    ...requestorOptions,
  });
  await acceptor.established;
  return { requestor, acceptor, a, b };
}

test("a requestor and an acceptor establish, C-ECHO and release", async () => {
  const { requestor, acceptor } = await connectedPair();
  new DimseService(acceptor, { handlers: { [COMMAND.C_ECHO_RQ]: echoHandler() } });
  const service = new DimseService(requestor);
  assert.equal(await echo(service), 0x0000);
  await requestor.release();
  const [r, s] = await Promise.all([requestor.closed, acceptor.closed]);
  assert.deepEqual([r.released, s.released], [true, true]);
  assert.equal(requestor.state, "Sta1");
  assert.equal(acceptor.state, "Sta1");
  assert.deepEqual(
    acceptor.history.map((h) => h[2]),
    ["AE-5", "AE-6", "AE-7", "DT-2", "DT-1", "AR-2", "AR-4", "AR-5"],
  );
});

test("a dataset larger than the peer maximum PDU is fragmented and reassembled byte for byte", async () => {
  const { requestor, acceptor, a } = await connectedPair({ acceptorOptions: { maxPDU: 4096 } });
  const received = [];
  new DimseService(acceptor, {
    handlers: {
      [COMMAND.C_STORE_RQ]: async (m) => {
        received.push(m.dataset);
        return { status: 0 };
      },
    },
  });
  const dataset = new Uint8Array(50_000).map((_, i) => (i * 7) & 0xff);
  const service = new DimseService(requestor);
  const context = [...requestor.contexts.values()].find((c) => c.abstractSyntax === SOP.CT_IMAGE);
  for await (const response of service.request(
    context.id,
    {
      AffectedSOPClassUID: SOP.CT_IMAGE,
      CommandField: COMMAND.C_STORE_RQ,
      Priority: 0,
      AffectedSOPInstanceUID: "1.2.3",
    },
    dataset,
  ))
    assert.equal(response.command.Status, 0);
  assert.deepEqual(received, [dataset]);
  const pdata = a.sent.map((bytes) => decodePDU(bytes)).filter((p) => p.type === PDU_TYPE.P_DATA_TF);
  assert.equal(pdata.length, 1 + Math.ceil(50_000 / 4090));
  assert.ok(a.sent.every((bytes) => bytes[0] !== PDU_TYPE.P_DATA_TF || bytes.length - 6 <= 4096));
  const last = pdata.at(-1).pdvs[0];
  assert.deepEqual([last.isCommand, last.isLast], [false, true]);
  await requestor.release();
});

test("release collision: both sides release at once and both end released (PS3.8 Sta9-Sta12)", async () => {
  const { requestor, acceptor } = await connectedPair();
  const both = Promise.all([requestor.release(), acceptor.release()]);
  await both;
  const [r, s] = await Promise.all([requestor.closed, acceptor.closed]);
  assert.deepEqual([r.released, s.released], [true, true]);
  const states = (assoc) => assoc.history.map((h) => h[1]);
  assert.ok(states(requestor).includes("Sta9") && states(requestor).includes("Sta11"), states(requestor).join());
  assert.ok(states(acceptor).includes("Sta10") && states(acceptor).includes("Sta12"), states(acceptor).join());
});

test("ARTIM: an acceptor that never receives an A-ASSOCIATE-RQ closes the connection", async () => {
  const transport = new ScriptedTransport();
  const acceptor = Association.accept(transport, { onAssociateRequest: acceptAll, artimTimeout: 20 });
  const { error } = await acceptor.closed;
  assert.equal(error.kind, "closed");
  assert.equal(transport.closed, true);
  assert.deepEqual(
    acceptor.history.map((h) => h[2]),
    ["AE-5", "AA-2"],
  );
});

test("ARTIM: after a release response the acceptor closes if the requestor never does", async () => {
  const { requestor, acceptor, a } = await connectedPair({ acceptorOptions: { artimTimeout: 20 } });
  a.close = () => {}; // the requestor side never closes its transport
  requestor.dispatch("Evt11");
  const result = await acceptor.closed;
  assert.equal(result.released, true);
  assert.deepEqual(
    acceptor.history.slice(-3).map((h) => h[2]),
    ["AR-2", "AR-4", "AA-2"],
  );
});

test("an A-ABORT from the peer ends the association, with the reason in words", async () => {
  const { requestor, acceptor } = await connectedPair();
  requestor.abort();
  const { error, aborted } = await acceptor.closed;
  assert.equal(aborted, true);
  assert.match(error.message, /aborted by the service user/);
  assert.equal((await requestor.closed).aborted, true);
});

test("pending DIMSE requests fail when the association is aborted", async () => {
  const { requestor, acceptor } = await connectedPair();
  new DimseService(acceptor, { handlers: { [COMMAND.C_ECHO_RQ]: () => new Promise(() => {}) } });
  const pending = echo(new DimseService(requestor));
  await tick();
  acceptor.abort();
  await assert.rejects(pending, /aborted/);
});

test("an invalid PDU during data transfer is answered with A-ABORT (provider, invalid parameter)", async () => {
  const transport = new ScriptedTransport();
  const requestor = Association.request(transport, {
    callingAET: "ECHOSCU",
    calledAET: "STORESCP",
    proposals: proposalsFor({ echo: true }),
  });
  await transport.waitSent(1);
  transport.feed(capture.echo[1].bytes); // DCMTK's A-ASSOCIATE-AC
  const assoc = await requestor;
  transport.feed(Uint8Array.from([0x04, 0, 0, 0, 0, 7, 0, 0, 0, 9, 1, 3, 0]));
  const abort = decodePDU(await transport.waitSent(2));
  assert.deepEqual(abort, { type: PDU_TYPE.ABORT, source: 2, reason: 6 });
  assert.equal(assoc.state, "Sta13");
  transport.peerCloses();
  const { error } = await assoc.closed;
  assert.match(error.message, /overruns the PDU/);
});

test("a PDV on a presentation context that was not accepted aborts the association", async () => {
  const transport = new ScriptedTransport();
  const requestor = Association.request(transport, {
    callingAET: "ECHOSCU",
    calledAET: "STORESCP",
    proposals: proposalsFor({ echo: true }),
  });
  await transport.waitSent(1);
  transport.feed(capture.echo[1].bytes);
  const assoc = await requestor;
  transport.feed(
    encodePDU({
      type: PDU_TYPE.P_DATA_TF,
      pdvs: [{ contextId: 5, isCommand: true, isLast: true, data: new Uint8Array(8) }],
    }),
  );
  assert.equal(decodePDU(await transport.waitSent(2)).type, PDU_TYPE.ABORT);
  transport.peerCloses();
  assert.match((await assoc.closed).error.message, /context 5, which was not accepted/);
});

test("an A-ASSOCIATE-AC during data transfer is unexpected: A-ABORT (AA-8)", async () => {
  const transport = new ScriptedTransport();
  const requestor = Association.request(transport, {
    callingAET: "ECHOSCU",
    calledAET: "STORESCP",
    proposals: proposalsFor({ echo: true }),
  });
  await transport.waitSent(1);
  transport.feed(capture.echo[1].bytes);
  const assoc = await requestor;
  transport.feed(capture.echo[1].bytes);
  assert.equal(decodePDU(await transport.waitSent(2)).type, PDU_TYPE.ABORT);
  assert.deepEqual(assoc.history.at(-1), ["Evt3", "Sta6", "AA-8"]);
  transport.peerCloses(); // AR-5: Sta13 → Sta1
  assert.equal((await assoc.closed).aborted, true);
});

test("an A-ASSOCIATE-RJ from DCMTK rejects the request with its reason", async () => {
  const transport = new ScriptedTransport();
  const requestor = Association.request(transport, {
    callingAET: "ECHOSCU",
    calledAET: "STORESCP",
    proposals: proposalsFor({ echo: true }),
  });
  await transport.waitSent(1);
  transport.feed(capture.refused[1].bytes);
  await assert.rejects(
    requestor,
    (err) => err.kind === "rejected" && /rejected \(permanent\) by service user/.test(err.message),
  );
  assert.equal(transport.closed, true);
});

test("an acceptor rejects a called AE title it does not have (PS3.8 reason 7)", async () => {
  const [a, b] = transportPair();
  Association.accept(b, { onAssociateRequest: storageNodePolicy("BROWSER") });
  await assert.rejects(
    Association.request(a, { callingAET: "X", calledAET: "SOMEONE", proposals: proposalsFor({ echo: true }) }),
    /called AE title not recognized/,
  );
});

test("user primitives outside their states are refused", async () => {
  const { requestor } = await connectedPair();
  assert.throws(() => requestor.dispatch("Evt7"), /not allowed in state Sta6/);
  await requestor.release();
  await assert.rejects(requestor.sendMessage(1, new Uint8Array(4)), /not established/);
});

test("DCMTK storescu replayed against the browser acceptor: instance byte-identical, success, release", async () => {
  const transport = new ScriptedTransport();
  const stored = [];
  const acceptor = Association.accept(transport, { onAssociateRequest: storageNodePolicy("STORESCP"), maxPDU: 4096 });
  new DimseService(acceptor, {
    handlers: {
      [COMMAND.C_STORE_RQ]: storeHandler(async (instance) => {
        stored.push(instance);
      }),
    },
  });
  const [rq, dcmtkAC, ...rest] = capture.store;
  await tick();
  transport.feed(rq.bytes);
  const ac = decodePDU(await transport.waitSent(1));
  assert.equal(ac.type, PDU_TYPE.ASSOCIATE_AC);
  // Every context DCMTK's storescp accepted, this node accepts too, in the same transfer syntax.
  const ours = new Map(ac.presentationContexts.map((pc) => [pc.id, pc]));
  const used = decodePDU(rest[0].bytes).pdvs[0].contextId;
  const theirs = decodePDU(dcmtkAC.bytes).presentationContexts.find((pc) => pc.id === used);
  assert.deepEqual([ours.get(used).result, ours.get(used).transferSyntax], [0, theirs.transferSyntax]);
  for (const p of rest.filter((x) => x.from === "scu" && x.bytes[0] === PDU_TYPE.P_DATA_TF)) transport.feed(p.bytes);
  const response = decodePDU(await transport.waitSent(2));
  const command = decodeCommand(response.pdvs[0].data);
  assert.deepEqual([command.CommandField, command.Status], [COMMAND.C_STORE_RSP, 0]);
  const file = capture.storeFile;
  const { datasetOffset } = readPart10(file);
  const got = stored[0].part10;
  assert.deepEqual(got.subarray(readPart10(got).datasetOffset), file.subarray(datasetOffset));
  assert.equal(stored[0].callingAET, "STORESCU");
  transport.feed(rest.find((p) => p.bytes[0] === PDU_TYPE.RELEASE_RQ).bytes);
  assert.equal(decodePDU(await transport.waitSent(3)).type, PDU_TYPE.RELEASE_RP);
  transport.peerCloses();
  assert.equal((await acceptor.closed).released, true);
});

test("DCMTK storescp replayed against the browser requestor: C-ECHO succeeds and release completes", async () => {
  const transport = new ScriptedTransport();
  const pending = Association.request(transport, {
    callingAET: "ECHOSCU",
    calledAET: "STORESCP",
    proposals: proposalsFor({ echo: true }),
  });
  const rq = decodePDU(await transport.waitSent(1));
  assert.deepEqual(
    rq.presentationContexts.map((pc) => pc.abstractSyntax),
    [SOP.VERIFICATION],
  );
  const [, ac, echoRQ, echoRSP, , releaseRP] = capture.echo;
  transport.feed(ac.bytes);
  const assoc = await pending;
  const status = echo(new DimseService(assoc));
  const sent = decodePDU(await transport.waitSent(2));
  // The C-ECHO-RQ command set is byte-identical to DCMTK's.
  assert.deepEqual(sent.pdvs[0].data, decodePDU(echoRQ.bytes).pdvs[0].data);
  transport.feed(echoRSP.bytes);
  assert.equal(await status, 0);
  const released = assoc.release();
  assert.equal(decodePDU(await transport.waitSent(3)).type, PDU_TYPE.RELEASE_RQ);
  transport.feed(releaseRP.bytes);
  await released;
  assert.equal(transport.closed, true);
});

test("C-STORE SCU sends a Part 10 file dataset as it is", async () => {
  const { requestor, acceptor } = await connectedPair({
    proposals: proposalsFor({ storage: [{ sopClass: SOP.CT_IMAGE, transferSyntaxes: [TS.EXPLICIT_LE] }] }),
  });
  const got = [];
  new DimseService(acceptor, {
    handlers: {
      [COMMAND.C_STORE_RQ]: storeHandler(async (i) => {
        got.push(i);
      }),
    },
  });
  const file = capture.storeFile;
  assert.equal(await store(new DimseService(requestor), file), 0);
  const { datasetOffset } = readPart10(file);
  assert.deepEqual(got[0].part10.subarray(readPart10(got[0].part10).datasetOffset), file.subarray(datasetOffset));
  await requestor.release();
});

test("encodeCommand writes what DCMTK writes for a C-STORE-RQ", () => {
  const pdata = decodePDU(capture.store[2].bytes);
  const dcmtk = pdata.pdvs[0].data;
  assert.deepEqual(encodeCommand(decodeCommand(dcmtk)), dcmtk);
});

test("a fragmented C-STORE dataset becomes one Part 10 file: file meta, then the fragments byte for byte", async () => {
  const { requestor, acceptor } = await connectedPair({
    acceptorOptions: { maxPDU: 4096 },
    proposals: proposalsFor({ storage: [{ sopClass: SOP.CT_IMAGE, transferSyntaxes: [TS.EXPLICIT_LE] }] }),
  });
  const messages = [];
  const stored = [];
  const handle = storeHandler(async (instance) => {
    stored.push(instance);
  });
  new DimseService(acceptor, {
    handlers: {
      [COMMAND.C_STORE_RQ]: (message, service) => {
        messages.push(message);
        return handle(message, service);
      },
    },
  });
  const pixels = new Uint8Array(30_000).map((_, i) => (i * 13) & 0xff);
  const dataset = encodeElements([
    { tag: TAGS.SOPClassUID, vr: "UI", value: SOP.CT_IMAGE },
    { tag: TAGS.SOPInstanceUID, vr: "UI", value: "1.2.826.0.1.3680043.10.1386.42" },
    { tag: TAGS.PatientName, vr: "PN", value: "FRAG^MENTED" },
    { tag: PIXEL_DATA, vr: "OW", value: pixels },
  ]);
  const context = [...requestor.contexts.values()].find((c) => c.abstractSyntax === SOP.CT_IMAGE);
  const service = new DimseService(requestor);
  for await (const response of service.request(
    context.id,
    {
      AffectedSOPClassUID: SOP.CT_IMAGE,
      CommandField: COMMAND.C_STORE_RQ,
      Priority: 0,
      AffectedSOPInstanceUID: "1.2.826.0.1.3680043.10.1386.42",
    },
    dataset,
  ))
    assert.equal(response.command.Status, 0);
  assert.ok(messages[0].datasetChunks.length > 1, "the dataset arrived in several fragments");
  assert.deepEqual(concat(messages[0].datasetChunks), dataset);
  assert.deepEqual(messages[0].dataset, dataset);
  const { part10, header } = stored[0];
  const { meta, datasetOffset } = readPart10(part10);
  assert.deepEqual(part10.subarray(datasetOffset), dataset);
  assert.equal(part10.byteLength, part10.buffer.byteLength, "the file is its own buffer, not a view into a larger one");
  assert.equal(meta.string(TAGS.MediaStorageSOPInstanceUID), "1.2.826.0.1.3680043.10.1386.42");
  assert.equal(meta.string(TAGS.MediaStorageSOPClassUID), SOP.CT_IMAGE);
  assert.equal(header.string(TAGS.PatientName), "FRAG^MENTED");
  await requestor.release();
});

test("a C-STORE whose dataset names another instance than its command is refused (0xA900) and not kept", async () => {
  const { requestor, acceptor } = await connectedPair({
    proposals: proposalsFor({ storage: [{ sopClass: SOP.CT_IMAGE, transferSyntaxes: [TS.EXPLICIT_LE] }] }),
  });
  const stored = [];
  new DimseService(acceptor, {
    handlers: { [COMMAND.C_STORE_RQ]: storeHandler(async (instance) => stored.push(instance)) },
  });
  const dataset = encodeElements([
    { tag: TAGS.SOPClassUID, vr: "UI", value: SOP.CT_IMAGE },
    { tag: TAGS.SOPInstanceUID, vr: "UI", value: "1.2.3.4" },
  ]);
  const context = [...requestor.contexts.values()].find((c) => c.abstractSyntax === SOP.CT_IMAGE);
  const responses = [];
  for await (const response of new DimseService(requestor).request(
    context.id,
    {
      AffectedSOPClassUID: SOP.CT_IMAGE,
      CommandField: COMMAND.C_STORE_RQ,
      Priority: 0,
      AffectedSOPInstanceUID: "1.2.3.5",
    },
    dataset,
  ))
    responses.push(response.command.Status);
  assert.deepEqual(responses, [0xa900]);
  assert.deepEqual(stored, []);
  await requestor.release();
});
