/**
 * DIMSE status codes (PS3.7 C, the service classes in PS3.4): the one table of their meaning,
 * for the network library's errors and for the viewer's STOW-RS failure and warning reasons
 * (PS3.18 10.5.3 uses the C-STORE codes).
 */

export const STATUS = Object.freeze({
  SUCCESS: 0x0000,
  PENDING: 0xff00,
  PENDING_WARNING: 0xff01,
  CANCEL: 0xfe00,
  SUB_OPERATIONS_WARNING: 0xb000,
  NOT_AUTHORIZED: 0x0124,
  PROCESSING_FAILURE: 0x0110,
  OUT_OF_RESOURCES: 0xa700,
  DATASET_MISMATCH: 0xa900,
  CANNOT_UNDERSTAND: 0xc000,
  MOVE_DESTINATION_UNKNOWN: 0xa801,
  UNRECOGNIZED_OPERATION: 0x0211,
  SOP_CLASS_NOT_SUPPORTED: 0x0122,
});

/** What a status means in any service (PS3.7 C.4, PS3.4 C.4, PS3.18 Table 10.5.3-1). */
const TEXT = new Map([
  [0x0000, "success"],
  [0xff00, "pending"],
  [0xff01, "pending (optional keys not supported)"],
  [0xfe00, "cancelled"],
  [0x0110, "processing failure"],
  [0x0112, "no such object instance"],
  [0x0119, "class-instance conflict"],
  [0x0122, "SOP class not supported"],
  [0x0124, "not authorized"],
  [0x0131, "duplicate invocation"],
  [0x0211, "unrecognized operation"],
  [0xa700, "out of resources"],
  [0xa701, "out of resources (matches)"],
  [0xa702, "out of resources (sub-operations)"],
  [0xa801, "move destination unknown"],
  [0xa900, "identifier does not match SOP class"],
  [0xb000, "sub-operations complete, one or more failed"],
  [0xc000, "cannot understand"],
  [0xc122, "transfer syntax not supported"],
  [0xc409, "instance belongs to another study"],
]);

/** Where a service gives a code its own meaning. */
const SERVICE_TEXT = {
  "C-STORE": new Map([
    [0xa900, "data set does not match SOP class"],
    [0xb000, "coercion of data elements"],
    [0xb006, "elements discarded"],
    [0xb007, "data set does not match SOP class"],
  ]),
};

/** success | pending | cancel | warning | failure (PS3.7 C.1). */
export function statusCategory(status) {
  if (status === 0x0000) return "success";
  if (status === 0xff00 || status === 0xff01) return "pending";
  if (status === 0xfe00) return "cancel";
  if (status === 0x0001 || (status & 0xf000) === 0xb000 || status === 0x0107 || status === 0x0116) return "warning";
  return "failure";
}

function hex(status) {
  return `0x${Number(status).toString(16).toUpperCase().padStart(4, "0")}`;
}

/** "processing failure (0x0110)"; "status 0xA7FF" for a code the table does not have; "" for none. */
export function statusText(status, service = null) {
  if (status === undefined || status === null) return "";
  const text = SERVICE_TEXT[service]?.get(status) ?? TEXT.get(status);
  return text ? `${text} (${hex(status)})` : `status ${hex(status)}`;
}

/** A status with its category, e.g. "failure: out of resources (0xA700)" or "success (0x0000)". */
export function describeStatus(status, service = null) {
  const category = statusCategory(status);
  const text = SERVICE_TEXT[service]?.get(status) ?? TEXT.get(status);
  if (!text) return `${category} (${hex(status)})`;
  return text === category || category === "pending" || category === "cancel"
    ? `${text} (${hex(status)})`
    : `${category}: ${text} (${hex(status)})`;
}
