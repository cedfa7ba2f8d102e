/**
 * dicomnet: a DICOM network library for the browser (plain ES modules, no build step).
 * See docs/dicom-websocket.md for the gateway protocol it speaks.
 */

export { storageNodePolicy } from "./acceptor.js";
export { Association, AssociationError, DEFAULT_MAX_PDU } from "./association.js";
export { concat, DecodeError, fromHex, toHex } from "./bytes.js";
export * from "./dataset.js";
export * from "./dictionary.js";
export * from "./dimse.js";
export { actionFor, EVENTS, STATES, TRANSITIONS } from "./fsm.js";
export { Gateway, Listener, SUBPROTOCOL, WebSocketTransport } from "./gateway.js";
export { InstanceStore, summarize } from "./idbstore.js";
export * from "./negotiation.js";
export * from "./part10.js";
export * from "./pdu.js";
export { DimseError, DimseService } from "./service.js";
export * from "./services.js";
export * from "./status.js";
export * from "./uids.js";
