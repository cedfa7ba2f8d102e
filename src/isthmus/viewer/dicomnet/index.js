/**
 * dicomnet: a DICOM network library for the browser (plain ES modules, no build step).
 * See docs/dicom-websocket.md for the gateway protocol it speaks.
 */
export * from './pdu.js';
export * from './dimse.js';
export * from './dataset.js';
export * from './dictionary.js';
export * from './part10.js';
export * from './uids.js';
export * from './negotiation.js';
export { STATES, EVENTS, TRANSITIONS, actionFor } from './fsm.js';
export { Association, AssociationError, DEFAULT_MAX_PDU } from './association.js';
export { DimseService, DimseError } from './service.js';
export * from './services.js';
export { storageNodePolicy } from './acceptor.js';
export { Gateway, Listener, WebSocketTransport, SUBPROTOCOL } from './gateway.js';
export { InstanceStore, summarize } from './idbstore.js';
export { DecodeError, toHex, fromHex, concat } from './bytes.js';
