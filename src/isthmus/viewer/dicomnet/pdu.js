/**
 * The seven protocol data units of the DICOM upper layer (PS3.8 9.3): encode and decode.
 *
 * A decoded PDU is a plain object with a `type` (one of PDU_TYPE) and the
 * fields of that type. Decoding is strict: a length that disagrees with its
 * content, an unknown item inside an A-ASSOCIATE PDU or a missing mandatory
 * item throws PDUError, which the state machine turns into Evt19 (PS3.8 9.2.3).
 */
import { ByteReader, ByteWriter, DecodeError, latin1 } from "./bytes.js";

export const PDU_TYPE = Object.freeze({
  ASSOCIATE_RQ: 0x01,
  ASSOCIATE_AC: 0x02,
  ASSOCIATE_RJ: 0x03,
  P_DATA_TF: 0x04,
  RELEASE_RQ: 0x05,
  RELEASE_RP: 0x06,
  ABORT: 0x07,
});

export const PDU_NAME = Object.freeze({
  1: "A-ASSOCIATE-RQ",
  2: "A-ASSOCIATE-AC",
  3: "A-ASSOCIATE-RJ",
  4: "P-DATA-TF",
  5: "A-RELEASE-RQ",
  6: "A-RELEASE-RP",
  7: "A-ABORT",
});

/** PS3.7 Annex A.2.1: the only DICOM application context name. */
export const APPLICATION_CONTEXT = "1.2.840.10008.3.1.1.1";
export const PDU_HEADER_LENGTH = 6;

// Item types (PS3.8 9.3.2, 9.3.3, PS3.7 D.3.3)
const ITEM = {
  APPLICATION_CONTEXT: 0x10,
  PRESENTATION_CONTEXT_RQ: 0x20,
  PRESENTATION_CONTEXT_AC: 0x21,
  ABSTRACT_SYNTAX: 0x30,
  TRANSFER_SYNTAX: 0x40,
  USER_INFORMATION: 0x50,
  MAX_LENGTH: 0x51,
  IMPLEMENTATION_CLASS_UID: 0x52,
  ASYNC_OPS_WINDOW: 0x53,
  ROLE_SELECTION: 0x54,
  IMPLEMENTATION_VERSION_NAME: 0x55,
  SOP_CLASS_EXTENDED: 0x56,
  SOP_CLASS_COMMON_EXTENDED: 0x57,
  USER_IDENTITY_RQ: 0x58,
  USER_IDENTITY_AC: 0x59,
};

/** Presentation context results in an A-ASSOCIATE-AC (PS3.8 Table 9-18). */
export const CONTEXT_RESULT = Object.freeze({
  ACCEPTANCE: 0,
  USER_REJECTION: 1,
  NO_REASON: 2,
  ABSTRACT_SYNTAX_NOT_SUPPORTED: 3,
  TRANSFER_SYNTAXES_NOT_SUPPORTED: 4,
});

/** A-ASSOCIATE-RJ result, source and reason (PS3.8 Table 9-21). */
export const REJECT = Object.freeze({
  RESULT_PERMANENT: 1,
  RESULT_TRANSIENT: 2,
  SOURCE_USER: 1,
  SOURCE_ACSE: 2,
  SOURCE_PRESENTATION: 3,
  REASON_NO_REASON: 1,
  REASON_CONTEXT_NOT_SUPPORTED: 2,
  REASON_CALLING_AE_NOT_RECOGNIZED: 3,
  REASON_CALLED_AE_NOT_RECOGNIZED: 7,
});

/** A-ABORT source (PS3.8 Table 9-26). */
export const ABORT_SOURCE = Object.freeze({ USER: 0, PROVIDER: 2 });

export class PDUError extends DecodeError {
  constructor(message) {
    super(message);
    this.name = "PDUError";
  }
}

/** Explain an A-ASSOCIATE-RJ in words (PS3.8 Table 9-21). */
export function describeReject({ result, source, reason }) {
  const reasons = {
    1: {
      1: "no reason given",
      2: "application context name not supported",
      3: "calling AE title not recognized",
      7: "called AE title not recognized",
    },
    2: { 1: "no reason given", 2: "protocol version not supported" },
    3: { 1: "temporary congestion", 2: "local limit exceeded" },
  };
  const sources = { 1: "service user", 2: "service provider (ACSE)", 3: "service provider (presentation)" };
  const kind = result === 2 ? "transient" : "permanent";
  const why = reasons[source]?.[reason] || `reason ${reason}`;
  return `association rejected (${kind}) by ${sources[source] || `source ${source}`}: ${why}`;
}

/** Explain an A-ABORT (PS3.8 Table 9-26). */
export function describeAbort({ source, reason }) {
  const reasons = {
    0: "reason not specified",
    1: "unrecognized PDU",
    2: "unexpected PDU",
    4: "unrecognized PDU parameter",
    5: "unexpected PDU parameter",
    6: "invalid PDU parameter value",
  };
  if (source === ABORT_SOURCE.PROVIDER)
    return `association aborted by the service provider: ${reasons[reason] || `reason ${reason}`}`;
  return "association aborted by the service user";
}

// ---------------------------------------------------------------- encoding

function uidItem(w, type, uid) {
  const text = uid.replace(/\0+$/, "");
  w.u8(type).u8(0).u16be(text.length).fixed(text, text.length);
}

function beginItem(w, type) {
  w.u8(type).u8(0).u16be(0);
  return w.length;
}

function endItem(w, start) {
  const length = w.length - start;
  if (length > 0xffff) throw new RangeError("item longer than 65535 bytes");
  w.setU16be(start - 2, length);
}

function encodeUserInformation(w, info = {}) {
  const start = beginItem(w, ITEM.USER_INFORMATION);
  w.u8(ITEM.MAX_LENGTH)
    .u8(0)
    .u16be(4)
    .u32be(info.maxLength ?? 0);
  if (info.implementationClassUID) uidItem(w, ITEM.IMPLEMENTATION_CLASS_UID, info.implementationClassUID);
  if (info.asyncOps) {
    w.u8(ITEM.ASYNC_OPS_WINDOW).u8(0).u16be(4).u16be(info.asyncOps.invoked).u16be(info.asyncOps.performed);
  }
  for (const role of info.roles || []) {
    const s = beginItem(w, ITEM.ROLE_SELECTION);
    w.u16be(role.sopClass.length)
      .fixed(role.sopClass, role.sopClass.length)
      .u8(role.scu ? 1 : 0)
      .u8(role.scp ? 1 : 0);
    endItem(w, s);
  }
  if (info.implementationVersionName) {
    const name = info.implementationVersionName;
    w.u8(ITEM.IMPLEMENTATION_VERSION_NAME).u8(0).u16be(name.length).fixed(name, name.length);
  }
  for (const ext of info.extended || []) {
    const s = beginItem(w, ITEM.SOP_CLASS_EXTENDED);
    w.u16be(ext.sopClass.length).fixed(ext.sopClass, ext.sopClass.length).bytes(ext.info);
    endItem(w, s);
  }
  for (const other of info.other || []) {
    w.u8(other.type).u8(0).u16be(other.data.length).bytes(other.data);
  }
  endItem(w, start);
}

function encodeAssociate(w, pdu) {
  w.u16be(pdu.protocolVersion ?? 1).u16be(0);
  w.fixed(pdu.calledAET, 16).fixed(pdu.callingAET, 16).zeros(32);
  uidItem(w, ITEM.APPLICATION_CONTEXT, pdu.applicationContext || APPLICATION_CONTEXT);
  for (const pc of pdu.presentationContexts) {
    if (pdu.type === PDU_TYPE.ASSOCIATE_RQ) {
      const s = beginItem(w, ITEM.PRESENTATION_CONTEXT_RQ);
      w.u8(pc.id).u8(0).u8(0).u8(0);
      uidItem(w, ITEM.ABSTRACT_SYNTAX, pc.abstractSyntax);
      for (const ts of pc.transferSyntaxes) uidItem(w, ITEM.TRANSFER_SYNTAX, ts);
      endItem(w, s);
    } else {
      const s = beginItem(w, ITEM.PRESENTATION_CONTEXT_AC);
      w.u8(pc.id).u8(0).u8(pc.result).u8(0);
      // PS3.8 9.3.3.2: the transfer syntax sub-item is present but not significant on rejection.
      uidItem(
        w,
        ITEM.TRANSFER_SYNTAX,
        pc.result === CONTEXT_RESULT.ACCEPTANCE ? pc.transferSyntax : pc.transferSyntax || "",
      );
      endItem(w, s);
    }
  }
  encodeUserInformation(w, pdu.userInfo);
}

/** Encode one PDU object to its bytes. */
export function encodePDU(pdu) {
  const w = new ByteWriter(pdu.type === PDU_TYPE.P_DATA_TF ? 64 : 512);
  w.u8(pdu.type).u8(0).u32be(0);
  switch (pdu.type) {
    case PDU_TYPE.ASSOCIATE_RQ:
    case PDU_TYPE.ASSOCIATE_AC:
      encodeAssociate(w, pdu);
      break;
    case PDU_TYPE.ASSOCIATE_RJ:
      w.u8(0).u8(pdu.result).u8(pdu.source).u8(pdu.reason);
      break;
    case PDU_TYPE.P_DATA_TF:
      return encodePData(pdu.pdvs);
    case PDU_TYPE.RELEASE_RQ:
    case PDU_TYPE.RELEASE_RP:
      w.zeros(4);
      break;
    case PDU_TYPE.ABORT:
      w.u8(0)
        .u8(0)
        .u8(pdu.source ?? 0)
        .u8(pdu.reason ?? 0);
      break;
    default:
      throw new RangeError(`unknown PDU type ${pdu.type}`);
  }
  w.setU32be(2, w.length - PDU_HEADER_LENGTH);
  return w.toBytes();
}

/**
 * A P-DATA-TF PDU from presentation data values (PS3.8 9.3.5):
 * each {contextId, isCommand, isLast, data}; written with one copy of `data`.
 */
export function encodePData(pdvs) {
  let length = 0;
  for (const pdv of pdvs) length += 6 + pdv.data.length;
  const out = new Uint8Array(PDU_HEADER_LENGTH + length);
  const view = new DataView(out.buffer);
  out[0] = PDU_TYPE.P_DATA_TF;
  view.setUint32(2, length, false);
  let offset = PDU_HEADER_LENGTH;
  for (const pdv of pdvs) {
    view.setUint32(offset, pdv.data.length + 2, false);
    out[offset + 4] = pdv.contextId;
    out[offset + 5] = (pdv.isCommand ? 1 : 0) | (pdv.isLast ? 2 : 0);
    out.set(pdv.data, offset + 6);
    offset += 6 + pdv.data.length;
  }
  return out;
}

// ---------------------------------------------------------------- decoding

function readUID(r, length, what) {
  const text = latin1(r.take(length, what)).replace(/[\0 ]+$/, "");
  if (!/^[0-9.]*$/.test(text)) throw new PDUError(`${what} ${JSON.stringify(text)} is not a UID`);
  return text;
}

function readAET(bytes, what) {
  for (const b of bytes) {
    if (b < 0x20 || b > 0x7e || b === 0x5c)
      throw new PDUError(`${what} contains a byte 0x${b.toString(16)} not allowed in an AE title`);
  }
  const text = latin1(bytes).trim();
  if (!text) throw new PDUError(`${what} is empty`);
  return text;
}

function decodeSubItems(r, end, onItem) {
  while (r.offset < end) {
    if (end - r.offset < 4) throw new PDUError("truncated item header");
    const type = r.u8();
    r.skip(1);
    const length = r.u16be();
    if (r.offset + length > end)
      throw new PDUError(`item 0x${type.toString(16)} of ${length} bytes overruns its parent`);
    const itemEnd = r.offset + length;
    onItem(type, length, itemEnd);
    if (r.offset !== itemEnd)
      throw new PDUError(`item 0x${type.toString(16)} has ${itemEnd - r.offset} unexpected bytes`);
  }
}

function decodePresentationContext(r, type, itemEnd) {
  const id = r.u8();
  r.skip(1);
  const result = r.u8();
  r.skip(1);
  if (id % 2 === 0) throw new PDUError(`presentation context ID ${id} is not odd (PS3.8 9.3.2.2)`);
  const pc = { id };
  if (type === ITEM.PRESENTATION_CONTEXT_RQ) {
    pc.abstractSyntax = null;
    pc.transferSyntaxes = [];
  } else {
    pc.result = result;
    pc.transferSyntax = null;
  }
  decodeSubItems(r, itemEnd, (sub, length) => {
    if (sub === ITEM.ABSTRACT_SYNTAX && type === ITEM.PRESENTATION_CONTEXT_RQ) {
      if (pc.abstractSyntax !== null) throw new PDUError(`presentation context ${id} has two abstract syntaxes`);
      pc.abstractSyntax = readUID(r, length, "abstract syntax");
    } else if (sub === ITEM.TRANSFER_SYNTAX) {
      if (type === ITEM.PRESENTATION_CONTEXT_RQ) {
        pc.transferSyntaxes.push(readUID(r, length, "transfer syntax"));
      } else if (pc.transferSyntax !== null) {
        throw new PDUError(`presentation context ${id} has two transfer syntaxes`);
      } else if (result === CONTEXT_RESULT.ACCEPTANCE) {
        pc.transferSyntax = readUID(r, length, "transfer syntax");
      } else {
        // PS3.8 9.3.3.2: not significant on rejection and "shall not be tested".
        pc.transferSyntax = latin1(r.take(length)).replace(/[\0 ]+$/, "");
      }
    } else {
      throw new PDUError(`unexpected sub-item 0x${sub.toString(16)} in presentation context ${id}`);
    }
  });
  if (type === ITEM.PRESENTATION_CONTEXT_RQ) {
    if (!pc.abstractSyntax) throw new PDUError(`presentation context ${id} has no abstract syntax`);
    if (pc.transferSyntaxes.length === 0) throw new PDUError(`presentation context ${id} has no transfer syntax`);
  } else {
    if (result > 4) throw new PDUError(`presentation context ${id} has result ${result}`);
    if (result === CONTEXT_RESULT.ACCEPTANCE && !pc.transferSyntax) {
      throw new PDUError(`accepted presentation context ${id} names no transfer syntax`);
    }
  }
  return pc;
}

function decodeUserInformation(r, itemEnd) {
  const info = { maxLength: null, roles: [], extended: [], other: [] };
  decodeSubItems(r, itemEnd, (sub, length, subEnd) => {
    switch (sub) {
      case ITEM.MAX_LENGTH:
        if (length !== 4) throw new PDUError("maximum length sub-item is not 4 bytes");
        info.maxLength = r.u32be();
        break;
      case ITEM.IMPLEMENTATION_CLASS_UID:
        info.implementationClassUID = readUID(r, length, "implementation class UID");
        break;
      case ITEM.IMPLEMENTATION_VERSION_NAME:
        info.implementationVersionName = latin1(r.take(length)).trim();
        break;
      case ITEM.ASYNC_OPS_WINDOW:
        if (length !== 4) throw new PDUError("asynchronous operations window sub-item is not 4 bytes");
        info.asyncOps = { invoked: r.u16be(), performed: r.u16be() };
        break;
      case ITEM.ROLE_SELECTION: {
        const uidLength = r.u16be();
        const sopClass = readUID(r, uidLength, "role selection SOP class");
        info.roles.push({ sopClass, scu: r.u8() === 1, scp: r.u8() === 1 });
        break;
      }
      case ITEM.SOP_CLASS_EXTENDED: {
        const uidLength = r.u16be();
        const sopClass = readUID(r, uidLength, "extended negotiation SOP class");
        info.extended.push({ sopClass, info: r.take(subEnd - r.offset).slice() });
        break;
      }
      default:
        // Common extended negotiation, user identity and future sub-items are kept as bytes.
        info.other.push({ type: sub, data: r.take(length).slice() });
    }
  });
  if (info.maxLength === null) throw new PDUError("user information has no maximum length sub-item (PS3.8 D.1)");
  return info;
}

function decodeAssociate(r, type) {
  const pdu = { type };
  pdu.protocolVersion = r.u16be();
  if ((pdu.protocolVersion & 1) === 0)
    throw new PDUError(`protocol version 0x${pdu.protocolVersion.toString(16)} does not include version 1`);
  r.skip(2);
  pdu.calledAET = readAET(r.take(16), "called AE title");
  pdu.callingAET = readAET(r.take(16), "calling AE title");
  r.skip(32);
  pdu.applicationContext = null;
  pdu.presentationContexts = [];
  pdu.userInfo = null;
  const wantedPC = type === PDU_TYPE.ASSOCIATE_RQ ? ITEM.PRESENTATION_CONTEXT_RQ : ITEM.PRESENTATION_CONTEXT_AC;
  const ids = new Set();
  decodeSubItems(r, r.end, (item, length, itemEnd) => {
    if (item === ITEM.APPLICATION_CONTEXT) {
      if (pdu.applicationContext !== null) throw new PDUError("two application context items");
      pdu.applicationContext = readUID(r, length, "application context name");
    } else if (item === wantedPC) {
      const pc = decodePresentationContext(r, item, itemEnd);
      if (ids.has(pc.id)) throw new PDUError(`presentation context ID ${pc.id} appears twice`);
      ids.add(pc.id);
      pdu.presentationContexts.push(pc);
    } else if (item === ITEM.USER_INFORMATION) {
      if (pdu.userInfo !== null) throw new PDUError("two user information items");
      pdu.userInfo = decodeUserInformation(r, itemEnd);
    } else {
      throw new PDUError(`unexpected item 0x${item.toString(16)} in ${PDU_NAME[type]}`);
    }
  });
  if (!pdu.applicationContext) throw new PDUError(`${PDU_NAME[type]} has no application context item`);
  if (type === PDU_TYPE.ASSOCIATE_RQ && pdu.presentationContexts.length === 0) {
    throw new PDUError("A-ASSOCIATE-RQ proposes no presentation context");
  }
  if (!pdu.userInfo) throw new PDUError(`${PDU_NAME[type]} has no user information item`);
  return pdu;
}

function decodePData(r) {
  const pdvs = [];
  while (r.remaining > 0) {
    const length = r.u32be();
    if (length < 2) throw new PDUError(`PDV item length ${length} is too short`);
    if (length > r.remaining) throw new PDUError(`PDV item of ${length} bytes overruns the PDU`);
    const contextId = r.u8();
    const header = r.u8();
    if (header & 0xfc) throw new PDUError(`PDV message control header 0x${header.toString(16)} has reserved bits set`);
    pdvs.push({ contextId, isCommand: (header & 1) === 1, isLast: (header & 2) === 2, data: r.take(length - 2) });
  }
  if (pdvs.length === 0) throw new PDUError("P-DATA-TF carries no PDV");
  return { type: PDU_TYPE.P_DATA_TF, pdvs };
}

/** Length of the whole PDU (header included) named by its first six bytes. */
export function pduLength(header) {
  if (header.length < PDU_HEADER_LENGTH) throw new PDUError("short PDU header");
  return PDU_HEADER_LENGTH + new DataView(header.buffer, header.byteOffset, 6).getUint32(2, false);
}

/**
 * Decode exactly one PDU. P-DATA values are views into `bytes`, not copies.
 * Throws PDUError on anything malformed.
 */
export function decodePDU(bytes) {
  if (bytes.length < PDU_HEADER_LENGTH) throw new PDUError(`PDU of ${bytes.length} bytes is shorter than its header`);
  const type = bytes[0];
  if (!PDU_NAME[type]) throw new PDUError(`unknown PDU type 0x${type.toString(16).padStart(2, "0")}`);
  const total = pduLength(bytes);
  if (total !== bytes.length) throw new PDUError(`${PDU_NAME[type]} says ${total} bytes but has ${bytes.length}`);
  const r = new ByteReader(bytes, PDU_HEADER_LENGTH);
  try {
    switch (type) {
      case PDU_TYPE.ASSOCIATE_RQ:
      case PDU_TYPE.ASSOCIATE_AC:
        if (total < 74) throw new PDUError(`${PDU_NAME[type]} is too short`);
        return decodeAssociate(r, type);
      case PDU_TYPE.P_DATA_TF:
        return decodePData(r);
      default: {
        if (total !== 10) throw new PDUError(`${PDU_NAME[type]} must be 10 bytes, not ${total}`);
        r.skip(1);
        const [a, b, c] = [r.u8(), r.u8(), r.u8()];
        if (type === PDU_TYPE.ASSOCIATE_RJ) {
          if (a < 1 || a > 2 || b < 1 || b > 3)
            throw new PDUError(`A-ASSOCIATE-RJ result ${a} source ${b} is not valid`);
          return { type, result: a, source: b, reason: c };
        }
        if (type === PDU_TYPE.ABORT) return { type, source: b, reason: c };
        return { type };
      }
    }
  } catch (err) {
    if (err instanceof PDUError) throw err;
    if (err instanceof DecodeError) throw new PDUError(`${PDU_NAME[type]}: ${err.message}`);
    throw err;
  }
}

/**
 * Reassemble PDUs from a byte stream (TCP) by their length field; used by
 * Node transports. `push(chunk)` returns the complete PDUs now available.
 */
export class PDUFramer {
  constructor(maxLength = 64 * 1024 * 1024) {
    this.maxLength = maxLength;
    this.chunks = [];
    this.buffered = 0;
  }

  push(chunk) {
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    const out = [];
    for (;;) {
      if (this.buffered < PDU_HEADER_LENGTH) break;
      const head = this.peek(PDU_HEADER_LENGTH);
      const total = pduLength(head);
      if (total > this.maxLength) throw new PDUError(`PDU of ${total} bytes exceeds the limit of ${this.maxLength}`);
      if (this.buffered < total) break;
      out.push(this.read(total));
    }
    return out;
  }

  peek(n) {
    const first = this.chunks[0];
    if (first.length >= n) return first.subarray(0, n);
    const out = new Uint8Array(n);
    let filled = 0;
    for (const c of this.chunks) {
      const part = c.subarray(0, n - filled);
      out.set(part, filled);
      filled += part.length;
      if (filled === n) break;
    }
    return out;
  }

  read(n) {
    const out = new Uint8Array(n);
    let filled = 0;
    while (filled < n) {
      const c = this.chunks[0];
      const part = c.subarray(0, n - filled);
      out.set(part, filled);
      filled += part.length;
      if (part.length === c.length) this.chunks.shift();
      else this.chunks[0] = c.subarray(part.length);
    }
    this.buffered -= n;
    return out;
  }
}
