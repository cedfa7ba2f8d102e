// dcmjs-dimse (npm, pinned in package.json) as a DICOM peer of the Python tests
// (tests/dimse/test_dcmjs_peer.py).  One JSON command in argv[2]; one JSON answer on stdout.
//
//   echo  {peer, calling}                              -> {status}
//   store {peer, calling, files, sent}                 -> {statuses: {uid: status}}
//   find  {peer, calling, level, keys, model}          -> {status, matches: [elements]}
//   move  {peer, calling, level, keys, model, cancel, destination, port, out}
//                                                      -> {status, counts, pending, received}
//   get   {peer, calling, level, keys, model, cancel, out} -> {status, counts, pending, received}
//   serve {aet, port, files, out, sent, destinations}  -> {ready}, then serves the files until
//                                                         stdin closes
//
// peer is {host, port, aet}; model "PATIENT" asks in the Patient Root model (Study Root
// otherwise); level WORKLIST is a Modality Worklist C-FIND; cancel sends a C-CANCEL after
// the first pending response; options go to Client.send (asyncOps, userIdentity, ...);
// maxPdu is the Maximum Length dcmjs-dimse receives.  Every SCP listens on 127.0.0.1 only.  What dcmjs-dimse receives in a C-STORE is written as it came
// off the wire (out/UID.raw, its transfer syntax in out/UID.ts); what it sends is written
// as it encoded it (sent/UID.raw and sent/UID.ts), so that the tests compare both sides byte for byte.
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import { Writable } from "node:stream";
import dimse from "dcmjs-dimse";

const { Client, Dataset, Implementation, Scp, Server, log } = dimse;
const { CEchoRequest, CFindRequest, CGetRequest, CMoveRequest, CStoreRequest } = dimse.requests;
const { CEchoResponse, CFindResponse, CGetResponse, CMoveResponse, CStoreResponse } = dimse.responses;
const { PresentationContextResult, SopClass, Status } = dimse.constants;

log.setLevel(process.env.DCMJS_LOG || "error");

const PATIENT_ROOT = {
  find: "1.2.840.10008.5.1.4.1.2.1.1",
  move: "1.2.840.10008.5.1.4.1.2.1.2",
  get: "1.2.840.10008.5.1.4.1.2.1.3",
};
const SERVICES = new Set([
  SopClass.Verification,
  SopClass.StudyRootQueryRetrieveInformationModelFind,
  SopClass.StudyRootQueryRetrieveInformationModelMove,
  SopClass.StudyRootQueryRetrieveInformationModelGet,
  ...Object.values(PATIENT_ROOT),
]);
const STORAGE_PREFIX = "1.2.840.10008.5.1.4.1.1.";

// ------------------------------------------------------------- what goes on the wire
let sentFolder;
const encode = Dataset.prototype.getDenaturalizedDataset;
Dataset.prototype.getDenaturalizedDataset = function (...args) {
  const bytes = encode.apply(this, args);
  const uid = this.getElement("SOPInstanceUID");
  // A stored instance, not a query's identifier or answer (those have a level).
  if (sentFolder && uid && !this.getElement("QueryRetrieveLevel")) {
    fs.writeFileSync(path.join(sentFolder, `${uid}.raw`), bytes);
    fs.writeFileSync(path.join(sentFolder, `${uid}.ts`), this.getTransferSyntaxUid());
  }
  return bytes;
};

/** A C-STORE's dataset stream that keeps the bytes as received. */
class Collector extends Writable {
  constructor(request) {
    super();
    this.request = request;
    this.chunks = [];
  }
  _write(chunk, _encoding, done) {
    this.chunks.push(Buffer.from(chunk));
    done();
  }
  toBuffer() {
    return Buffer.concat(this.chunks);
  }
}

/** Receive C-STOREs on `network` (an Scp, or a Client's network) into `out`. */
function keepReceived(network, out, received) {
  network.createStoreWritableStream = (_context, request) => new Collector(request);
  network.createDatasetFromStoreWritableStream = (writable, context, callback) => {
    const bytes = writable.toBuffer();
    const syntax = context.getAcceptedTransferSyntaxUid();
    const uid = writable.request.getAffectedSopInstanceUid();
    fs.writeFileSync(path.join(out, `${uid}.raw`), bytes);
    fs.writeFileSync(path.join(out, `${uid}.ts`), syntax);
    received.push(uid);
    callback(new Dataset(bytes, syntax));
  };
}

function storeResponse(request) {
  const response = CStoreResponse.fromRequest(request);
  response.setStatus(Status.Success);
  return response;
}

// ------------------------------------------------------------------ as the SCU
function identifier(command) {
  const keys = { ...command.keys };
  keys.QueryRetrieveLevel = command.level;
  return new Dataset(keys);
}

function findRequest(command) {
  const factory = {
    STUDY: CFindRequest.createStudyFindRequest,
    SERIES: CFindRequest.createSeriesFindRequest,
    IMAGE: CFindRequest.createImageFindRequest,
    WORKLIST: CFindRequest.createWorklistFindRequest,
  }[command.level];
  const request = factory ? factory(command.keys) : new CFindRequest();
  if (!factory) {
    request.setDataset(identifier(command));
  }
  if (command.model === "PATIENT") {
    request.setAffectedSopClassUid(PATIENT_ROOT.find);
  }
  return request;
}

/** Run `requests` on one association; resolves when the association is over. */
function associate(command, requests, setup) {
  return new Promise((resolve, reject) => {
    const client = new Client();
    for (const request of requests) {
      client.addRequest(request);
    }
    client.on("networkError", reject);
    client.on("associationRejected", (rj) => reject(new Error(`rejected: ${JSON.stringify(rj)}`)));
    client.on("closed", resolve);
    const { host, port, aet } = command.peer;
    const options = { associationTimeout: 20000, ...command.options };
    client.send(host, port, command.calling || "DCMJS", aet, options);
    if (setup) {
      setup(client);
    }
  });
}

function counts(response) {
  return {
    completed: response.getCompleted(),
    failed: response.getFailures(),
    warning: response.getWarnings(),
    remaining: response.getRemaining(),
  };
}

async function echo(command) {
  const request = new CEchoRequest();
  let status;
  request.on("response", (response) => {
    status = response.getStatus();
  });
  await associate(command, [request]);
  return { status };
}

async function store(command) {
  sentFolder = command.sent;
  const statuses = {};
  const requests = command.files.map((file) => {
    const request = new CStoreRequest(file);
    const uid = request.getDataset().getElement("SOPInstanceUID");
    request.on("response", (response) => {
      statuses[uid] = response.getStatus();
    });
    return request;
  });
  await associate(command, requests);
  return { statuses };
}

async function find(command) {
  const request = findRequest(command);
  const matches = [];
  let status;
  request.on("response", (response) => {
    status = response.getStatus();
    if (status === Status.Pending && response.hasDataset()) {
      matches.push(response.getDataset().getElements());
    }
  });
  await associate(command, [request]);
  return { status, matches };
}

function retrieveRequest(kind, command) {
  const request = kind === "move" ? new CMoveRequest() : new CGetRequest();
  request.setDataset(identifier(command));
  if (kind === "move") {
    request.getCommandDataset().setElement("MoveDestination", command.destination);
  } else {
    request.setAddStorageSopClassesToAssociation(true);
  }
  if (command.model === "PATIENT") {
    request.setAffectedSopClassUid(PATIENT_ROOT[kind]);
  }
  return request;
}

/** The last response's status and counts; with `cancel`, a C-CANCEL after the first
 * pending response (PS3.7 9.3.2.3). */
function finalOf(request, command, clients) {
  const outcome = { status: undefined, counts: undefined, pending: 0 };
  request.on("response", (response) => {
    outcome.status = response.getStatus();
    outcome.counts = counts(response);
    if (outcome.status === Status.Pending) {
      outcome.pending += 1;
      if (command.cancel && outcome.pending === 1) {
        clients[0].cancel(request);
      }
    }
  });
  return outcome;
}

async function move(command) {
  const received = [];
  const server = await listen(receiver(command.out, received), command.port);
  try {
    const request = retrieveRequest("move", command);
    const clients = [];
    const outcome = finalOf(request, command, clients);
    await associate(command, [request], (client) => clients.push(client));
    return { ...outcome, received };
  } finally {
    server.close();
  }
}

async function get(command) {
  const received = [];
  const request = retrieveRequest("get", command);
  const clients = [];
  const outcome = finalOf(request, command, clients);
  await associate(command, [request], (client) => {
    clients.push(client);
    keepReceived(client.network, command.out, received);
    client.on("cStoreRequest", (rq, callback) => callback(storeResponse(rq)));
  });
  return { ...outcome, received };
}

// ------------------------------------------------------------------ as the SCP
let served = { files: [], out: "", destinations: {}, aet: "DCMJS" };

/** Accept the first proposed transfer syntax of Verification, Q/R and storage. */
function acceptContexts(association) {
  for (const pc of association.getPresentationContexts()) {
    const context = association.getPresentationContext(pc.id);
    const abstract = context.getAbstractSyntaxUid();
    if (SERVICES.has(abstract) || abstract.startsWith(STORAGE_PREFIX)) {
      const [syntax] = context.getTransferSyntaxUids();
      context.setResult(PresentationContextResult.Accept, syntax);
    } else {
      context.setResult(PresentationContextResult.RejectAbstractSyntaxNotSupported);
    }
  }
}

/** The first value of a naturalized element as text (a person name's alphabetic group). */
function text(value) {
  const first = Array.isArray(value) ? value[0] : value;
  if (first !== null && typeof first === "object") {
    return first.Alphabetic ?? "";
  }
  return first === undefined || first === null ? "" : String(first);
}

/** PS3.4 C.2.2.2: universal (empty or "*"), wildcard and single value matching. */
function matchesValue(wanted, value) {
  const key = text(wanted);
  if (key === "" || key === "*") {
    return true;
  }
  const pattern = key
    .replace(/[.+^${}()|[\]\\]/g, "\\$&")
    .replace(/\*/g, ".*")
    .replace(/\?/g, ".");
  return new RegExp(`^${pattern}$`).test(text(value));
}

/** The served files whose attributes match the identifier's unique and other keys. */
function matching(request) {
  const keys = request.getDataset().getElements();
  const out = [];
  for (const file of served.files) {
    const elements = file.dataset.getElements();
    const ok = Object.entries(keys).every(
      ([k, v]) => k === "QueryRetrieveLevel" || k === "SpecificCharacterSet" || matchesValue(v, elements[k]),
    );
    if (ok) {
      out.push(file);
    }
  }
  return out;
}

const LEVEL_KEYS = {
  PATIENT: "PatientID",
  STUDY: "StudyInstanceUID",
  SERIES: "SeriesInstanceUID",
  IMAGE: "SOPInstanceUID",
};

function findAnswers(request) {
  const keys = request.getDataset().getElements();
  const unique = LEVEL_KEYS[keys.QueryRetrieveLevel];
  const seen = new Set();
  const answers = [];
  for (const file of matching(request)) {
    const elements = file.dataset.getElements();
    if (seen.has(elements[unique])) {
      continue;
    }
    seen.add(elements[unique]);
    const answer = { QueryRetrieveLevel: keys.QueryRetrieveLevel };
    for (const k of Object.keys(keys)) {
      if (k !== "QueryRetrieveLevel" && elements[k] !== undefined) {
        answer[k] = elements[k];
      }
    }
    if (elements.SpecificCharacterSet) {
      answer.SpecificCharacterSet = elements.SpecificCharacterSet;
    }
    const response = CFindResponse.fromRequest(request);
    response.setDataset(new Dataset(answer));
    response.setStatus(Status.Pending);
    answers.push(response);
  }
  const done = CFindResponse.fromRequest(request);
  done.setStatus(Status.Success);
  answers.push(done);
  return answers;
}

/** Send `files` as C-STOREs with `send(request)`, answering pending/final responses. */
function subOperations(request, files, responseClass, send, callback) {
  const tally = { remaining: files.length, completed: 0, failed: 0, warning: 0 };
  const respond = (status) => {
    const response = responseClass.fromRequest(request);
    response.setStatus(status);
    response.setRemaining(tally.remaining);
    response.setCompleted(tally.completed);
    response.setFailures(tally.failed);
    response.setWarnings(tally.warning);
    return response;
  };
  if (files.length === 0) {
    callback([respond(Status.Success)]);
    return;
  }
  const stores = files.map((file) => {
    const store = new CStoreRequest(file.dataset);
    store.on("response", (response) => {
      tally.remaining -= 1;
      const status = response.getStatus();
      if (status === Status.Success) {
        tally.completed += 1;
      } else if (status === 0x0001 || (status & 0xf000) === 0xb000) {
        tally.warning += 1;
      } else {
        tally.failed += 1;
      }
      if (tally.remaining === 0) {
        callback([respond(tally.failed || tally.warning ? 0xb000 : Status.Success)]);
      } else {
        send.pending(respond(Status.Pending));
      }
    });
    return store;
  });
  send.requests(stores);
}

class PeerScp extends Scp {
  constructor(socket, opts) {
    super(socket, opts);
    keepReceived(this, served.out, []);
  }
  associationRequested(association) {
    this.association = association;
    acceptContexts(association);
    this.sendAssociationAccept();
  }
  associationReleaseRequested() {
    this.sendAssociationReleaseResponse();
  }
  cEchoRequest(request, callback) {
    const response = CEchoResponse.fromRequest(request);
    response.setStatus(Status.Success);
    callback(response);
  }
  cStoreRequest(request, callback) {
    callback(storeResponse(request));
  }
  cFindRequest(request, callback) {
    callback(findAnswers(request));
  }
  cMoveRequest(request, callback) {
    const destination = request.getCommandDataset().getElement("MoveDestination");
    const known = served.destinations[destination];
    if (!known) {
      const response = CMoveResponse.fromRequest(request);
      response.setStatus(Status.MoveDestinationUnknown);
      callback([response]);
      return;
    }
    const client = new Client();
    const send = {
      pending: (response) => this.sendResponse(request, response),
      requests: (stores) => {
        for (const store of stores) {
          client.addRequest(store);
        }
        client.on("networkError", () => undefined);
        client.send(known.host, known.port, served.aet, destination);
      },
    };
    subOperations(request, matching(request), CMoveResponse, send, callback);
  }
  cGetRequest(request, callback) {
    const send = {
      pending: (response) => this.sendResponse(request, response),
      requests: (stores) => this.sendRequests(stores),
    };
    subOperations(request, matching(request), CGetResponse, send, callback);
  }
}

/**
 * Start dcmjs-dimse's Server with `scpClass` on 127.0.0.1:`port`; resolves once it listens.
 * Its listen() binds every interface: the bind it makes is pointed at loopback.
 */
function listen(scpClass, port) {
  const server = new Server(scpClass);
  const bind = net.Server.prototype.listen;
  return new Promise((resolve, reject) => {
    server.on("listening", () => resolve(server));
    server.on("networkError", reject); // before listening: the port is taken
    net.Server.prototype.listen = function (p) {
      return bind.call(this, p, "127.0.0.1");
    };
    try {
      server.listen(port);
    } finally {
      net.Server.prototype.listen = bind;
    }
  });
}

/** The C-MOVE destination of `move`: an SCP keeping what it receives in `out`. */
function receiver(out, received) {
  return class Receiver extends PeerScp {
    constructor(socket, opts) {
      super(socket, opts);
      keepReceived(this, out, received);
    }
  };
}

async function serve(command) {
  sentFolder = command.sent;
  served = {
    aet: command.aet,
    out: command.out,
    destinations: command.destinations || {},
    files: (command.files || []).map((file) => ({ file, dataset: Dataset.fromFile(file) })),
  };
  const server = await listen(PeerScp, command.port);
  process.stdout.write(`${JSON.stringify({ ready: true })}\n`);
  await new Promise((resolve) => {
    process.stdin.on("end", resolve);
    process.stdin.on("close", resolve);
    process.stdin.resume();
  });
  server.close();
  return { stopped: true };
}

const OPERATIONS = { echo, store, find, move, get, serve };

const command = JSON.parse(process.argv[2]);
if (command.maxPdu !== undefined) {
  Implementation.setMaxPduLength(command.maxPdu); // the Maximum Length we receive (PS3.8 D.1)
}
try {
  const answer = await OPERATIONS[command.op](command);
  process.stdout.write(`${JSON.stringify(answer)}\n`);
  process.exit(0);
} catch (error) {
  process.stderr.write(`${error.stack || error}\n`);
  process.exit(1);
}
