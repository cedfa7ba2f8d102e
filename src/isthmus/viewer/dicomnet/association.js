/**
 * One DICOM association over a message transport: the upper layer state machine
 * (PS3.8 9.2), association establishment with presentation context negotiation,
 * release (including release collisions, PS3.8 9.2.3 Sta9-Sta12), abort, the
 * ARTIM timer, and P-DATA fragmentation and reassembly (PS3.8 9.3.5, PS3.7 Annex E).
 *
 * A transport carries whole PDUs: `connect({open, pdu, closed})`, `send(bytes)`,
 * `close()` and optionally `drain()` (resolves when its send buffer is low).
 * WebSocketTransport (gateway.js) is one; tests pair two in memory.
 */
import { concat } from "./bytes.js";
import { decodeCommand, hasDataset } from "./dimse.js";
import { actionFor, PDU_EVENT } from "./fsm.js";
import { agreedContexts, proposeContexts, proposeRoles } from "./negotiation.js";
import {
  ABORT_SOURCE,
  APPLICATION_CONTEXT,
  decodePDU,
  describeAbort,
  describeReject,
  encodePData,
  encodePDU,
  PDU_HEADER_LENGTH,
  PDU_TYPE,
  REJECT,
} from "./pdu.js";
import { IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME } from "./uids.js";

export const DEFAULT_MAX_PDU = 1024 * 1024;
/** A-ABORT reasons when the provider aborts (PS3.8 Table 9-26). */
const UNEXPECTED_PDU = 2;
const INVALID_PARAMETER = 6;

/** Why an association could not be established or ended abnormally. */
export class AssociationError extends Error {
  constructor(message, kind, detail = {}) {
    super(message);
    this.name = "AssociationError";
    this.kind = kind; // rejected | aborted | closed | timeout | local
    Object.assign(this, detail);
  }
}

function deferred() {
  const d = {};
  d.promise = new Promise((resolve, reject) => {
    d.resolve = resolve;
    d.reject = reject;
  });
  d.promise.catch(() => {}); // observed by whoever awaits it; never an unhandled rejection
  return d;
}

export class Association {
  /**
   * Options: mode ('requestor' | 'acceptor'), maxPDU (announced maximum receive
   * length), maxSendPDU (cap when the peer announces 0 = unlimited), artimTimeout
   * and acseTimeout in ms, log(message).
   */
  constructor(transport, options = {}) {
    this.transport = transport;
    this.isRequestor = options.mode !== "acceptor";
    this.state = "Sta1";
    this.maxPDU = options.maxPDU ?? DEFAULT_MAX_PDU;
    this.maxSendPDU = options.maxSendPDU ?? DEFAULT_MAX_PDU;
    this.artimTimeout = options.artimTimeout ?? 30000;
    this.acseTimeout = options.acseTimeout ?? 30000;
    this.log = options.log || (() => {});
    this.contexts = new Map();
    this.peerMaxPDU = 0;
    this.request = null; // the A-ASSOCIATE-RQ (sent or received)
    this.response = null; // the A-ASSOCIATE-AC or -RJ
    this.onMessage = null; // (message) => void, set by the DIMSE layer
    this.onAssociateRequest = null; // acceptor: async (rq) => ({contexts}) | ({reject})
    this.history = []; // [event, state, action] for diagnostics and tests
    this.incoming = null;
    this.sending = Promise.resolve();
    this.timers = { artim: null, acse: null };
    this.outcome = null;
    this.establishedD = deferred();
    this.releasedD = null;
    this.closedD = deferred();
  }

  /** Resolves when established; rejects with AssociationError otherwise. */
  get established() {
    return this.establishedD.promise;
  }

  /** Resolves with {released, aborted, error} once the association is over. */
  get closed() {
    return this.closedD.promise;
  }

  get isEstablished() {
    return this.state === "Sta6";
  }

  // ------------------------------------------------------------ user primitives

  /** Requestor: connect and send an A-ASSOCIATE-RQ for `proposals`; resolves when accepted. */
  static async request(transport, { callingAET, calledAET, proposals, ...options }) {
    const assoc = new Association(transport, { ...options, mode: "requestor" });
    assoc.request = {
      type: PDU_TYPE.ASSOCIATE_RQ,
      calledAET,
      callingAET,
      applicationContext: APPLICATION_CONTEXT,
      presentationContexts: proposeContexts(proposals),
      userInfo: {
        maxLength: assoc.maxPDU,
        implementationClassUID: IMPLEMENTATION_CLASS_UID,
        implementationVersionName: IMPLEMENTATION_VERSION_NAME,
        roles: proposeRoles(proposals),
      },
    };
    assoc.dispatch("Evt1");
    await assoc.established;
    return assoc;
  }

  /**
   * Acceptor: start on a transport whose peer will send an A-ASSOCIATE-RQ.
   * `onAssociateRequest(rq)` decides: {contexts: answers} to accept, {reject:
   * {result, source, reason}} to reject.
   */
  static accept(transport, { onAssociateRequest, ...options }) {
    const assoc = new Association(transport, { ...options, mode: "acceptor" });
    assoc.onAssociateRequest = onAssociateRequest;
    assoc.connectTransport();
    return assoc;
  }

  /** A-RELEASE request; resolves when the peer confirmed (PS3.8 7.2). */
  release() {
    if (this.state !== "Sta6") return this.closed.then(() => undefined);
    this.releasedD = deferred();
    this.dispatch("Evt11");
    return this.releasedD.promise;
  }

  /** A-ABORT request (PS3.8 7.3); the association ends at once. */
  abort() {
    if (["Sta1", "Sta13"].includes(this.state)) return;
    if (this.state === "Sta2") {
      this.dispatch("Evt18"); // nothing negotiated yet: just close, as on ARTIM expiry
      return;
    }
    this.dispatch("Evt15");
  }

  /**
   * Send one DIMSE message: the command set and optional dataset as PDVs, each
   * PDU no larger than the peer's maximum length (PS3.8 9.3.5, D.1).
   */
  sendMessage(contextId, command, dataset = null) {
    const run = async () => {
      const max = this.maxPDVData();
      await this.sendFragments(contextId, true, command, max);
      if (dataset) await this.sendFragments(contextId, false, dataset, max);
    };
    const done = this.sending.then(run);
    this.sending = done.catch(() => {});
    return done;
  }

  /** Largest PDV value that fits the peer's maximum PDU (item header: 4 + 2 bytes). */
  maxPDVData() {
    const peer = this.peerMaxPDU === 0 ? this.maxSendPDU : Math.min(this.peerMaxPDU, this.maxSendPDU);
    return Math.max(peer - 6, 1);
  }

  async sendFragments(contextId, isCommand, bytes, max) {
    let offset = 0;
    do {
      const end = Math.min(bytes.length, offset + max);
      if (!["Sta6", "Sta8"].includes(this.state)) {
        throw this.outcome?.error || new AssociationError("association is not established", "local");
      }
      const pdu = encodePData([
        { contextId, isCommand, isLast: end === bytes.length, data: bytes.subarray(offset, end) },
      ]);
      this.dispatch("Evt9", { bytes: pdu });
      offset = end;
      if (this.transport.drain) await this.transport.drain();
    } while (offset < bytes.length);
  }

  // ------------------------------------------------------------ transport side

  connectTransport() {
    this.transport.connect({
      open: () => this.dispatch(this.isRequestor ? "Evt2" : "Evt5"),
      pdu: (bytes) => this.receive(bytes),
      closed: (info = {}) => {
        this.transportClose = info;
        if (this.state !== "Sta1") this.dispatch("Evt17");
      },
    });
  }

  receive(bytes) {
    let pdu;
    try {
      pdu = decodePDU(bytes);
      if (pdu.type === PDU_TYPE.P_DATA_TF && bytes.length - PDU_HEADER_LENGTH > this.maxPDU && this.maxPDU > 0) {
        throw new Error(
          `P-DATA-TF of ${bytes.length - PDU_HEADER_LENGTH} bytes exceeds the negotiated maximum ${this.maxPDU}`,
        );
      }
    } catch (error) {
      this.log(`invalid PDU: ${error.message}`);
      this.dispatch("Evt19", { error, reason: INVALID_PARAMETER });
      return;
    }
    this.dispatch(PDU_EVENT[pdu.type], { pdu });
  }

  send(pdu) {
    this.transport.send(pdu instanceof Uint8Array ? pdu : encodePDU(pdu));
  }

  // ------------------------------------------------------------ the state machine

  /** Run the PS3.8 Table 9-10 action for `event` in the current state. */
  dispatch(event, data = {}) {
    const action = actionFor(event, this.state);
    if (!action) {
      // A primitive the local user may not issue now (PS3.8 9.2: no defined action).
      throw new AssociationError(`${event} is not allowed in state ${this.state}`, "local");
    }
    this.history.push([event, this.state, action]);
    const next = ACTIONS[action].call(this, data);
    this.state = next;
    if (next === "Sta1") this.finish();
  }

  startTimer(name, ms, onExpiry) {
    this.stopTimer(name);
    this.timers[name] = setTimeout(() => {
      this.timers[name] = null;
      onExpiry();
    }, ms);
  }

  stopTimer(name) {
    if (this.timers[name]) clearTimeout(this.timers[name]);
    this.timers[name] = null;
  }

  startARTIM() {
    this.startTimer("artim", this.artimTimeout, () => this.dispatch("Evt18"));
  }

  /** Waiting on the peer (AC, RP) for longer than acseTimeout aborts the association. */
  startACSETimer(what) {
    this.startTimer("acse", this.acseTimeout, () => {
      this.setOutcome(new AssociationError(`no ${what} from the peer within ${this.acseTimeout} ms`, "timeout"));
      if (this.state === "Sta4") this.dispatch("Evt15");
      else if (actionFor("Evt15", this.state)) this.dispatch("Evt15");
    });
  }

  setOutcome(error, extra = {}) {
    if (!this.outcome) this.outcome = { error, ...extra };
  }

  closeTransport() {
    try {
      this.transport.close();
    } catch {
      /* already closed */
    }
  }

  /** Back in Sta1: settle every promise and stop timers. */
  finish() {
    this.stopTimer("artim");
    this.stopTimer("acse");
    const outcome = this.outcome || {};
    const error = outcome.error || null;
    if (this.incoming) this.incoming = null;
    this.establishedD.reject(error || new AssociationError("association closed before it was established", "closed"));
    if (this.releasedD) {
      if (outcome.released) this.releasedD.resolve();
      else this.releasedD.reject(error || new AssociationError("association ended without release", "closed"));
    }
    this.closedD.resolve({ released: !!outcome.released, aborted: !!outcome.aborted, error });
  }

  /** Reason text from the transport, e.g. the gateway's WebSocket close reason. */
  transportReason() {
    const info = this.transportClose || {};
    return info.reason ? ` (${info.reason})` : "";
  }

  deliverPData(pdu) {
    for (const pdv of pdu.pdvs) {
      const problem = this.reassemble(pdv);
      if (problem) {
        queueMicrotask(() => {
          if (["Sta6", "Sta7"].includes(this.state))
            this.dispatch("Evt19", { error: new Error(problem), reason: INVALID_PARAMETER });
        });
        return;
      }
    }
  }

  /** Collect PDV fragments into a DIMSE message (PS3.7 E.2); returns a problem or null. */
  reassemble(pdv) {
    const context = this.contexts.get(pdv.contextId);
    if (!context?.accepted) return `PDV on presentation context ${pdv.contextId}, which was not accepted`;
    let m = this.incoming;
    if (!m) {
      if (!pdv.isCommand) return "dataset fragment before any command";
      m = { contextId: pdv.contextId, commandChunks: [], datasetChunks: [], command: null };
      this.incoming = m;
    }
    if (pdv.contextId !== m.contextId)
      return `PDV on context ${pdv.contextId} inside a message on context ${m.contextId}`;
    if (pdv.isCommand) {
      if (m.command) return "command fragment after the command set was complete";
      m.commandChunks.push(pdv.data);
      if (!pdv.isLast) return null;
      try {
        m.command = decodeCommand(m.commandChunks.length === 1 ? m.commandChunks[0] : concat(m.commandChunks));
      } catch (error) {
        return `invalid command set: ${error.message}`;
      }
      if (!hasDataset(m.command)) this.deliver(m, null);
      return null;
    }
    if (!m.command) return "dataset fragment before the command set was complete";
    m.datasetChunks.push(pdv.data);
    if (pdv.isLast) this.deliver(m, m.datasetChunks);
    return null;
  }

  /** Acceptor decision after AE-6 (Sta3): ask the user, answer with AC (Evt7) or RJ (Evt8). */
  async decide(rq) {
    let answer;
    try {
      answer = this.onAssociateRequest ? await this.onAssociateRequest(rq) : { reject: {} };
    } catch (error) {
      this.log(`association request handler failed: ${error.message}`);
      answer = { reject: {} };
    }
    if (this.state !== "Sta3") return; // aborted or closed meanwhile
    if (answer.reject) {
      const {
        result = REJECT.RESULT_PERMANENT,
        source = REJECT.SOURCE_USER,
        reason = REJECT.REASON_NO_REASON,
      } = answer.reject;
      this.dispatch("Evt8", { pdu: { type: PDU_TYPE.ASSOCIATE_RJ, result, source, reason } });
      return;
    }
    this.dispatch("Evt7", {
      pdu: {
        type: PDU_TYPE.ASSOCIATE_AC,
        calledAET: rq.calledAET,
        callingAET: rq.callingAET,
        applicationContext: APPLICATION_CONTEXT,
        presentationContexts: answer.contexts,
        userInfo: {
          maxLength: this.maxPDU,
          implementationClassUID: IMPLEMENTATION_CLASS_UID,
          implementationVersionName: IMPLEMENTATION_VERSION_NAME,
          roles: answer.roles || [],
        },
      },
    });
  }

  /**
   * Hand a complete DIMSE message to the DIMSE layer. `datasetChunks` are the PDV values
   * as received (views into the PDUs); `dataset` joins them into one new buffer the first
   * time it is read, so a handler that copies the fragments somewhere anyway (the C-STORE
   * SCP, behind the file meta) does so once, not twice.
   */
  deliver(m, chunks) {
    this.incoming = null;
    const context = this.contexts.get(m.contextId);
    let joined = null;
    const message = {
      contextId: m.contextId,
      context,
      command: m.command,
      datasetChunks: chunks,
      get dataset() {
        if (!chunks) return null;
        joined ??= chunks.length === 1 ? chunks[0].slice() : concat(chunks);
        return joined;
      },
    };
    if (this.onMessage) this.onMessage(message);
  }
}

/** The actions of PS3.8 Table 9-9 ... 9-8; each returns the next state. */
const ACTIONS = {
  "AE-1"() {
    this.startACSETimer("transport connection");
    this.connectTransport();
    return "Sta4";
  },
  "AE-2"() {
    this.send(this.request);
    this.startACSETimer("A-ASSOCIATE response");
    return "Sta5";
  },
  "AE-3"({ pdu }) {
    this.stopTimer("acse");
    this.response = pdu;
    this.contexts = agreedContexts(this.request.presentationContexts, pdu.presentationContexts);
    this.peerMaxPDU = pdu.userInfo.maxLength;
    this.peerRoles = pdu.userInfo.roles;
    this.establishedD.resolve(this);
    return "Sta6";
  },
  "AE-4"({ pdu }) {
    this.response = pdu;
    this.setOutcome(new AssociationError(describeReject(pdu), "rejected", { rejection: pdu }));
    this.closeTransport();
    return "Sta1";
  },
  "AE-5"() {
    this.startARTIM();
    return "Sta2";
  },
  "AE-6"({ pdu }) {
    this.stopTimer("artim");
    this.request = pdu;
    this.peerMaxPDU = pdu.userInfo.maxLength;
    if (pdu.applicationContext !== APPLICATION_CONTEXT) {
      this.response = {
        type: PDU_TYPE.ASSOCIATE_RJ,
        result: REJECT.RESULT_PERMANENT,
        source: REJECT.SOURCE_USER,
        reason: 2,
      };
      this.send(this.response);
      this.setOutcome(new AssociationError(describeReject(this.response), "rejected", { rejection: this.response }));
      this.startARTIM();
      return "Sta13";
    }
    queueMicrotask(() => this.decide(pdu));
    return "Sta3";
  },
  "AE-7"({ pdu }) {
    this.send(pdu);
    this.response = pdu;
    this.contexts = agreedContexts(this.request.presentationContexts, pdu.presentationContexts);
    this.establishedD.resolve(this);
    return "Sta6";
  },
  "AE-8"({ pdu }) {
    this.send(pdu);
    this.response = pdu;
    this.setOutcome(new AssociationError(describeReject(pdu), "rejected", { rejection: pdu }));
    this.startARTIM();
    return "Sta13";
  },
  "DT-1"({ bytes }) {
    this.send(bytes);
    return "Sta6";
  },
  "DT-2"({ pdu }) {
    this.deliverPData(pdu);
    return "Sta6";
  },
  "AR-1"() {
    this.send({ type: PDU_TYPE.RELEASE_RQ });
    this.startACSETimer("A-RELEASE-RP");
    return "Sta7";
  },
  "AR-2"() {
    // A-RELEASE indication: this library answers at once (the DIMSE layer has sent all it will).
    queueMicrotask(() => {
      if (this.state === "Sta8") this.dispatch("Evt14");
    });
    return "Sta8";
  },
  "AR-3"() {
    this.stopTimer("acse");
    this.setOutcome(null, { released: true });
    this.closeTransport();
    return "Sta1";
  },
  "AR-4"() {
    this.send({ type: PDU_TYPE.RELEASE_RP });
    this.setOutcome(null, { released: true });
    this.startARTIM();
    return "Sta13";
  },
  "AR-5"() {
    this.stopTimer("artim");
    return "Sta1";
  },
  "AR-6"({ pdu }) {
    this.deliverPData(pdu);
    return "Sta7";
  },
  "AR-7"({ bytes }) {
    this.send(bytes);
    return "Sta8";
  },
  "AR-8"() {
    // Release collision (PS3.8 9.2.3 note): the requestor answers first, the acceptor waits.
    if (this.isRequestor) {
      queueMicrotask(() => {
        if (this.state === "Sta9") this.dispatch("Evt14");
      });
      return "Sta9";
    }
    return "Sta10";
  },
  "AR-9"() {
    this.send({ type: PDU_TYPE.RELEASE_RP });
    return "Sta11";
  },
  "AR-10"() {
    queueMicrotask(() => {
      if (this.state === "Sta12") this.dispatch("Evt14");
    });
    return "Sta12";
  },
  "AA-1"({ error }) {
    // Evt15 (local abort) is a service-user abort; an unexpected PDU in Sta2 is the provider's.
    const source = error ? ABORT_SOURCE.PROVIDER : ABORT_SOURCE.USER;
    this.send({ type: PDU_TYPE.ABORT, source, reason: error ? UNEXPECTED_PDU : 0 });
    this.setOutcome(error || new AssociationError("association aborted by the local user", "aborted"), {
      aborted: true,
    });
    this.startARTIM();
    return "Sta13";
  },
  "AA-2"() {
    this.stopTimer("artim");
    this.setOutcome(new AssociationError(`transport closed${this.transportReason()}`, "closed"));
    this.closeTransport();
    return "Sta1";
  },
  "AA-3"({ pdu }) {
    this.setOutcome(new AssociationError(describeAbort(pdu), "aborted", { abort: pdu }), { aborted: true });
    this.closeTransport();
    return "Sta1";
  },
  "AA-4"() {
    const reason = this.transportClose?.reason;
    const what = reason ? `connection closed: ${reason}` : "connection closed without release or abort";
    this.setOutcome(new AssociationError(what, "closed"), { aborted: true });
    return "Sta1";
  },
  "AA-5"() {
    this.stopTimer("artim");
    this.setOutcome(
      new AssociationError(`connection closed before an A-ASSOCIATE-RQ${this.transportReason()}`, "closed"),
    );
    return "Sta1";
  },
  "AA-6"() {
    return "Sta13";
  },
  "AA-7"() {
    this.send({ type: PDU_TYPE.ABORT, source: ABORT_SOURCE.PROVIDER, reason: UNEXPECTED_PDU });
    return "Sta13";
  },
  "AA-8"({ error, reason }) {
    this.send({ type: PDU_TYPE.ABORT, source: ABORT_SOURCE.PROVIDER, reason: reason ?? UNEXPECTED_PDU });
    const why = error ? error.message : `unexpected PDU in state ${this.state}`;
    this.setOutcome(new AssociationError(`association aborted: ${why}`, "aborted"), { aborted: true });
    this.startARTIM();
    return "Sta13";
  },
};
