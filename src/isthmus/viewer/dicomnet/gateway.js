/**
 * The client side of Isthmus' DICOM-over-WebSocket gateway (docs/dicom-websocket.md):
 * one WebSocket per association, one complete PDU per binary message.
 *
 *   GET /dicom-ws/associate?peer=AET   outbound association to a known peer
 *   GET /dicom-ws/listen?aet=AET       register an AE title; text messages announce callers
 *   GET /dicom-ws/accept?id=ID         take one announced inbound association
 *
 * Browsers cannot set an Authorization header on a WebSocket, so an API token
 * travels as the subprotocol "isthmus-token.<token>" next to "dicom-ws".
 */

import { Association } from "./association.js";
import { asBytes } from "./bytes.js";
import { DimseService } from "./service.js";

export const SUBPROTOCOL = "dicom-ws";
const HIGH_WATER = 4 * 1024 * 1024;

/** A WebSocket carrying whole PDUs (PS3.8 9.3 framing replaced by message boundaries). */
export class WebSocketTransport {
  constructor(url, { protocols = [SUBPROTOCOL], WebSocketImpl = globalThis.WebSocket } = {}) {
    this.url = url;
    this.protocols = protocols;
    this.WebSocketImpl = WebSocketImpl;
    this.ws = null;
    this.opened = false;
  }

  connect({ open, pdu, closed }) {
    const ws = new this.WebSocketImpl(this.url, this.protocols);
    this.ws = ws;
    ws.binaryType = "arraybuffer";
    ws.onopen = () => {
      this.opened = true;
      open();
    };
    ws.onmessage = (event) => {
      if (typeof event.data === "string") return; // the gateway sends PDUs only, as binary
      pdu(asBytes(event.data));
    };
    ws.onclose = (event) => {
      const reason = event.reason || (this.opened ? "" : "the gateway refused the WebSocket or is unreachable");
      closed({ code: event.code, reason });
    };
    ws.onerror = () => {};
  }

  send(bytes) {
    if (this.ws && this.ws.readyState === 1) this.ws.send(bytes);
  }

  close() {
    if (this.ws && this.ws.readyState <= 1) this.ws.close(1000);
  }

  /** Wait while more than HIGH_WATER bytes are queued, so large sends do not pile up in memory. */
  async drain() {
    while (this.ws && this.ws.readyState === 1 && this.ws.bufferedAmount > HIGH_WATER) {
      await new Promise((resolve) => setTimeout(resolve, 2));
    }
  }
}

/** Where the gateway is and how to authenticate to it. */
export class Gateway {
  /** base: the Isthmus origin (e.g. location.origin); token: an API token or null. */
  constructor({ base = globalThis.location?.origin, token = null, WebSocketImpl = globalThis.WebSocket } = {}) {
    this.base = base;
    this.token = token;
    this.WebSocketImpl = WebSocketImpl;
  }

  url(path, params) {
    const url = new URL(path, this.base);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    for (const [k, v] of Object.entries(params)) url.searchParams.set(k, v);
    return url.toString();
  }

  protocols() {
    return this.token ? [SUBPROTOCOL, `isthmus-token.${this.token}`] : [SUBPROTOCOL];
  }

  transport(path, params) {
    return new WebSocketTransport(this.url(path, params), {
      protocols: this.protocols(),
      WebSocketImpl: this.WebSocketImpl,
    });
  }

  /** What this client may do: {aet, peers, max_pdu, ...} from GET /dicom-ws/peers. */
  async info() {
    const headers = this.token ? { Authorization: `Bearer ${this.token}` } : {};
    const response = await fetch(new URL("/dicom-ws/peers", this.base), { headers });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(body.error || `gateway answered HTTP ${response.status}`);
    return body;
  }

  /**
   * Open an association to the known peer `peer` (its AE title); resolves with
   * {association, service} once accepted. `handlers` serve requests the peer sends
   * on it (C-STORE sub-operations of a C-GET).
   */
  async associate(peer, { callingAET, proposals, handlers = {}, maxPDU, timeout, ...options }) {
    const association = await Association.request(this.transport("/dicom-ws/associate", { peer }), {
      callingAET,
      calledAET: peer,
      proposals,
      maxPDU,
      maxSendPDU: maxPDU,
      ...options,
    });
    return { association, service: new DimseService(association, { handlers, timeout }) };
  }

  /**
   * Register `aet` with the gateway. For each caller, `decide(rq)` answers the
   * A-ASSOCIATE-RQ ({contexts} or {reject}) and `handlers` (or handlers(info), per
   * association) serve its requests;
   * `onAssociation({id, calling, called, association, service})` reports each one.
   * Resolves with a Listener once registered; rejects if the gateway refuses.
   */
  listen(aet, { decide, handlers, onAssociation = () => {}, onClose = () => {}, maxPDU, ...options }) {
    return new Promise((resolve, reject) => {
      const ws = new this.WebSocketImpl(this.url("/dicom-ws/listen", { aet }), this.protocols());
      const listener = new Listener(ws);
      ws.onmessage = (event) => {
        if (typeof event.data !== "string") return;
        const message = JSON.parse(event.data);
        if (message.type === "registered") resolve(listener);
        else if (message.type === "association") {
          const association = Association.accept(this.transport("/dicom-ws/accept", { id: message.id }), {
            onAssociateRequest: decide,
            maxPDU,
            maxSendPDU: maxPDU,
            ...options,
          });
          const info = { ...message, association };
          info.service = new DimseService(association, {
            handlers: typeof handlers === "function" ? handlers(info) : handlers,
          });
          onAssociation(info);
        }
      };
      ws.onclose = (event) => {
        const reason =
          event.reason || `WebSocket closed (${event.code}); the gateway refused the registration or is unreachable`;
        listener.closed = true;
        reject(new Error(reason));
        onClose({ code: event.code, reason });
      };
      ws.onerror = () => {};
    });
  }
}

/** A registered AE title; close() unregisters it. */
export class Listener {
  constructor(ws) {
    this.ws = ws;
    this.closed = false;
  }

  close() {
    if (!this.closed) this.ws.close(1000);
  }
}
