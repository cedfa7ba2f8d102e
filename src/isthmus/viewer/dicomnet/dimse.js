/**
 * DIMSE command sets (PS3.7 9.3, 6.3.1): always Implicit VR Little Endian, group 0000,
 * with Command Group Length first. A command is a plain object keyed by the
 * keywords below; encodeCommand/decodeCommand convert it.
 */
import { ByteReader, DecodeError, latin1 } from "./bytes.js";
import { encodeElements } from "./dataset.js";

/** keyword → [tag, VR] of the command elements (PS3.7 E.1). */
const COMMAND_ELEMENTS = {
  AffectedSOPClassUID: [0x00000002, "UI"],
  RequestedSOPClassUID: [0x00000003, "UI"],
  CommandField: [0x00000100, "US"],
  MessageID: [0x00000110, "US"],
  MessageIDBeingRespondedTo: [0x00000120, "US"],
  MoveDestination: [0x00000600, "AE"],
  Priority: [0x00000700, "US"],
  CommandDataSetType: [0x00000800, "US"],
  Status: [0x00000900, "US"],
  OffendingElement: [0x00000901, "AT"],
  ErrorComment: [0x00000902, "LO"],
  ErrorID: [0x00000903, "US"],
  AffectedSOPInstanceUID: [0x00001000, "UI"],
  RequestedSOPInstanceUID: [0x00001001, "UI"],
  NumberOfRemainingSuboperations: [0x00001020, "US"],
  NumberOfCompletedSuboperations: [0x00001021, "US"],
  NumberOfFailedSuboperations: [0x00001022, "US"],
  NumberOfWarningSuboperations: [0x00001023, "US"],
  MoveOriginatorApplicationEntityTitle: [0x00001030, "AE"],
  MoveOriginatorMessageID: [0x00001031, "US"],
};
const BY_TAG = new Map(Object.entries(COMMAND_ELEMENTS).map(([k, [t, vr]]) => [t, [k, vr]]));

/** Command Field values (PS3.7 E.1). */
export const COMMAND = Object.freeze({
  C_STORE_RQ: 0x0001,
  C_STORE_RSP: 0x8001,
  C_GET_RQ: 0x0010,
  C_GET_RSP: 0x8010,
  C_FIND_RQ: 0x0020,
  C_FIND_RSP: 0x8020,
  C_MOVE_RQ: 0x0021,
  C_MOVE_RSP: 0x8021,
  C_ECHO_RQ: 0x0030,
  C_ECHO_RSP: 0x8030,
  C_CANCEL_RQ: 0x0fff,
});

/** Command Data Set Type: no dataset follows (PS3.7 E.1); anything else means one does. */
export const NO_DATASET = 0x0101;
export const DATASET_PRESENT = 0x0000;

/** Encode a command object (keywords above) to Implicit VR LE bytes with group length. */
export function encodeCommand(command) {
  const elements = [];
  for (const [keyword, value] of Object.entries(command)) {
    if (value === undefined || value === null) continue;
    const entry = COMMAND_ELEMENTS[keyword];
    if (!entry) throw new RangeError(`unknown command element ${keyword}`);
    elements.push({ tag: entry[0], vr: entry[1], value });
  }
  const body = encodeElements(elements, { implicit: true });
  const length = encodeElements([{ tag: 0x00000000, vr: "UL", value: body.length }], { implicit: true });
  const out = new Uint8Array(length.length + body.length);
  out.set(length, 0);
  out.set(body, length.length);
  return out;
}

/** Decode a command set; throws DecodeError when it is not a group 0000 set. */
export function decodeCommand(bytes) {
  const r = new ByteReader(bytes);
  const command = {};
  while (r.remaining > 0) {
    const group = r.u16le();
    const element = r.u16le();
    const length = r.u32le();
    if (group !== 0x0000)
      throw new DecodeError(`command set element (${group.toString(16)},${element.toString(16)}) is not in group 0000`);
    const value = r.take(length, `command element ${element.toString(16)}`);
    const tag = element;
    if (tag === 0) continue;
    const entry = BY_TAG.get(tag);
    if (!entry) continue; // retired or unknown elements are ignored (PS3.7 6.3.1)
    const [keyword, vr] = entry;
    const view = new DataView(value.buffer, value.byteOffset, value.byteLength);
    if (vr === "US") {
      if (length !== 2) throw new DecodeError(`${keyword} has length ${length}, not 2`);
      command[keyword] = view.getUint16(0, true);
    } else if (vr === "AT") {
      const tags = [];
      for (let o = 0; o + 4 <= length; o += 4)
        tags.push(((view.getUint16(o, true) << 16) | view.getUint16(o + 2, true)) >>> 0);
      command[keyword] = tags;
    } else {
      command[keyword] = latin1(value)
        .replace(/[\0 ]+$/, "")
        .trim();
    }
  }
  if (command.CommandField === undefined) throw new DecodeError("command set has no Command Field");
  return command;
}

export function hasDataset(command) {
  return command.CommandDataSetType !== undefined && command.CommandDataSetType !== NO_DATASET;
}

export function isResponse(command) {
  return (command.CommandField & 0x8000) !== 0;
}
