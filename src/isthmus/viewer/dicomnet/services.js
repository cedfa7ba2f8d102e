/**
 * DIMSE-C services (PS3.4 A, B, C; PS3.7 9.1): C-ECHO, C-FIND, C-MOVE, C-GET and
 * C-STORE as SCU, and C-ECHO and C-STORE handlers for the SCP side.
 */
import { concat, DecodeError } from "./bytes.js";
import { encodeIdentifier, PIXEL_DATA, parseDataset } from "./dataset.js";
import { TAGS } from "./dictionary.js";
import { COMMAND } from "./dimse.js";
import { findContext } from "./negotiation.js";
import { fileMeta, readPart10 } from "./part10.js";
import { DimseError } from "./service.js";
import { STATUS, statusCategory } from "./status.js";
import { isImplicitVR, QR_MODELS, SOP, STORAGE_SOP_CLASSES, UNCOMPRESSED } from "./uids.js";

const PRIORITY_MEDIUM = 0;

function contextFor(service, abstractSyntax, what) {
  const context = findContext(service.association.contexts, abstractSyntax);
  if (!context) throw new Error(`${what}: the peer accepted no presentation context for ${abstractSyntax}`);
  return context;
}

function modelUID(root, operation) {
  const model = QR_MODELS[root];
  if (!model) throw new RangeError(`query/retrieve root ${root} is not PATIENT or STUDY`);
  return model[operation];
}

// ------------------------------------------------------------ presentation contexts to propose

/** Proposals for the services a caller wants on one association. */
export function proposalsFor({
  echo = false,
  find = null,
  move = null,
  get = null,
  storage = [],
  storageRoles = false,
} = {}) {
  const proposals = [];
  if (echo) proposals.push({ abstractSyntax: SOP.VERIFICATION, transferSyntaxes: [...UNCOMPRESSED] });
  for (const [root, op] of [
    [find, "find"],
    [move, "move"],
    [get, "get"],
  ]) {
    if (root) proposals.push({ abstractSyntax: modelUID(root, op), transferSyntaxes: [...UNCOMPRESSED] });
  }
  for (const item of storage) {
    const { sopClass, transferSyntaxes } =
      typeof item === "string" ? { sopClass: item, transferSyntaxes: UNCOMPRESSED } : item;
    proposals.push({ abstractSyntax: sopClass, transferSyntaxes: [...transferSyntaxes], scpRole: storageRoles });
  }
  return proposals;
}

/** Storage SOP classes to offer as C-GET SCP, most common first, within the context limit. */
export function commonStorageClasses(limit = 100) {
  const first = [
    "CT",
    "MR",
    "Secondary Capture",
    "Computed Radiography",
    "Digital X-Ray",
    "Ultrasound",
    "Enhanced",
    "Positron",
    "Nuclear",
  ];
  const score = ([, name]) => {
    const i = first.findIndex((word) => name.replace(/([a-z])([A-Z])/g, "$1 $2").includes(word));
    return i === -1 ? first.length : i;
  };
  return [...STORAGE_SOP_CLASSES]
    .sort((a, b) => score(a) - score(b))
    .slice(0, limit)
    .map(([uid]) => uid);
}

// ------------------------------------------------------------ SCU operations

async function finalResponse(responses, operation, onPending = null) {
  let last = null;
  for await (const message of responses) {
    last = message;
    if (statusCategory(message.command.Status) === "pending" && onPending) await onPending(message);
  }
  if (!last) throw new Error(`${operation}: no response`);
  const status = last.command.Status;
  if (statusCategory(status) === "failure") throw new DimseError(operation, status, last.command.ErrorComment || "");
  return last;
}

/** C-ECHO SCU (PS3.4 A.4): resolves with the status. */
export async function echo(service) {
  const context = contextFor(service, SOP.VERIFICATION, "C-ECHO");
  const last = await finalResponse(
    service.request(context.id, {
      AffectedSOPClassUID: SOP.VERIFICATION,
      CommandField: COMMAND.C_ECHO_RQ,
    }),
    "C-ECHO",
  );
  return last.command.Status;
}

/**
 * C-FIND SCU (PS3.4 C.4.1). keys: {QueryRetrieveLevel, PatientName: 'DOE*', StudyDate:
 * '20240101-', StudyInstanceUID: '', ...}; matching keys have values, return keys are ''.
 * Resolves with the matches as objects keyword → value; `onMatch` sees each as it comes.
 */
export async function find(service, { root = "STUDY", keys, onMatch = null }) {
  if (!keys?.QueryRetrieveLevel) throw new RangeError("C-FIND needs keys with a QueryRetrieveLevel");
  const sopClass = modelUID(root, "find");
  const context = contextFor(service, sopClass, "C-FIND");
  const implicit = isImplicitVR(context.transferSyntax);
  const matches = [];
  const responses = service.request(
    context.id,
    {
      AffectedSOPClassUID: sopClass,
      CommandField: COMMAND.C_FIND_RQ,
      Priority: PRIORITY_MEDIUM,
    },
    encodeIdentifier(keys, { implicit }),
  );
  await finalResponse(responses, "C-FIND", (message) => {
    if (!message.dataset) return;
    const match = parseDataset(message.dataset, { implicit }).toObject();
    matches.push(match);
    if (onMatch) onMatch(match);
  });
  return matches;
}

function progressOf(command) {
  return {
    status: command.Status,
    remaining: command.NumberOfRemainingSuboperations ?? null,
    completed: command.NumberOfCompletedSuboperations ?? 0,
    failed: command.NumberOfFailedSuboperations ?? 0,
    warning: command.NumberOfWarningSuboperations ?? 0,
  };
}

async function retrieve(service, operation, { root, keys, destination, onProgress }) {
  const sopClass = modelUID(root, operation);
  const name = operation === "move" ? "C-MOVE" : "C-GET";
  const context = contextFor(service, sopClass, name);
  const implicit = isImplicitVR(context.transferSyntax);
  const command = {
    AffectedSOPClassUID: sopClass,
    CommandField: operation === "move" ? COMMAND.C_MOVE_RQ : COMMAND.C_GET_RQ,
    Priority: PRIORITY_MEDIUM,
  };
  if (operation === "move") command.MoveDestination = destination;
  const last = await finalResponse(
    service.request(context.id, command, encodeIdentifier(keys, { implicit })),
    name,
    (message) => onProgress?.(progressOf(message.command)),
  );
  const result = progressOf(last.command);
  if (onProgress) onProgress(result);
  return result;
}

/**
 * C-MOVE SCU (PS3.4 C.4.2): ask the peer to send what `keys` names to `destination`;
 * `onProgress({remaining, completed, failed, warning})` follows the pending responses.
 */
export function move(service, { root = "STUDY", keys, destination, onProgress = null }) {
  if (!destination) throw new RangeError("C-MOVE needs a destination AE title");
  return retrieve(service, "move", { root, keys, destination, onProgress });
}

/**
 * C-GET SCU (PS3.4 C.4.3): instances arrive as C-STORE requests on the same
 * association, handled by the service's C-STORE handler (storeHandler below).
 */
export function get(service, { root = "STUDY", keys, onProgress = null }) {
  return retrieve(service, "get", { root, keys, onProgress });
}

/**
 * C-STORE SCU (PS3.4 B.2) of one Part 10 file; its dataset is sent as it is, so a
 * context for its SOP class and transfer syntax must have been accepted.
 */
export async function store(service, part10, { moveOriginator = null } = {}) {
  const { meta, transferSyntaxUID, datasetOffset } = readPart10(part10);
  const sopClassUID = meta.string(TAGS.MediaStorageSOPClassUID);
  const sopInstanceUID = meta.string(TAGS.MediaStorageSOPInstanceUID);
  const context = findContext(service.association.contexts, sopClassUID, [transferSyntaxUID]);
  if (!context) throw new Error(`C-STORE: the peer accepted no context for ${sopClassUID} in ${transferSyntaxUID}`);
  const command = {
    AffectedSOPClassUID: sopClassUID,
    CommandField: COMMAND.C_STORE_RQ,
    Priority: PRIORITY_MEDIUM,
    AffectedSOPInstanceUID: sopInstanceUID,
  };
  if (moveOriginator) Object.assign(command, moveOriginator);
  const last = await finalResponse(service.request(context.id, command, part10.subarray(datasetOffset)), "C-STORE");
  return last.command.Status;
}

// ------------------------------------------------------------ SCP handlers

/** C-ECHO SCP handler (PS3.4 A.4). */
export function echoHandler() {
  return async () => ({ status: STATUS.SUCCESS });
}

/**
 * C-STORE SCP handler (PS3.4 B.2.2): checks the dataset names the instance the
 * command announced, adds file meta (PS3.10 7.1) and hands the Part 10 bytes to
 * `onInstance({part10, header, sopClassUID, sopInstanceUID, transferSyntaxUID,
 * callingAET})`, answering success only after it resolved.
 */
export function storeHandler(onInstance) {
  return async (message, service) => {
    const { command, context } = message;
    const chunks = message.datasetChunks ?? (message.dataset ? [message.dataset] : null);
    if (!chunks) return { status: STATUS.CANNOT_UNDERSTAND, ErrorComment: "no dataset" };
    const transferSyntaxUID = context.transferSyntax;
    const callingAET = service.association.request?.callingAET || "";
    // The file meta names what the command announced; the dataset must agree (checked below).
    // Meta and fragments are copied once, into the file's own buffer.
    const head = fileMeta({
      sopClassUID: command.AffectedSOPClassUID,
      sopInstanceUID: command.AffectedSOPInstanceUID,
      transferSyntaxUID,
      sourceAET: callingAET,
    });
    const part10 = concat([head, ...chunks]);
    const dataset = part10.subarray(head.length);
    let header;
    try {
      header = parseDataset(dataset, { implicit: isImplicitVR(transferSyntaxUID), stopAt: PIXEL_DATA });
    } catch (error) {
      if (error instanceof DecodeError)
        return { status: STATUS.CANNOT_UNDERSTAND, ErrorComment: error.message.slice(0, 64) };
      throw error;
    }
    const sopInstanceUID = header.string(TAGS.SOPInstanceUID);
    const sopClassUID = header.string(TAGS.SOPClassUID);
    if (sopInstanceUID !== command.AffectedSOPInstanceUID || sopClassUID !== command.AffectedSOPClassUID) {
      return { status: STATUS.DATASET_MISMATCH, ErrorComment: "dataset does not match the command" };
    }
    await onInstance({
      part10,
      header,
      sopClassUID,
      sopInstanceUID,
      transferSyntaxUID,
      callingAET,
      moveOriginator: command.MoveOriginatorApplicationEntityTitle || null,
    });
    return { status: STATUS.SUCCESS };
  };
}
