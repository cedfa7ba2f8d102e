/**
 * DIMSE message exchange on an established association (PS3.7 7, 9): message IDs,
 * matching responses to requests, and dispatching incoming requests to handlers
 * (the SCP side). Without an asynchronous operations window (PS3.7 D.3.3.3) one
 * request is outstanding per direction, but responses and sub-operation requests
 * (C-STORE under C-GET) can interleave, so both directions are served at once.
 */

import { AssociationError } from "./association.js";
import { COMMAND, DATASET_PRESENT, encodeCommand, isResponse, NO_DATASET } from "./dimse.js";
import { describeStatus, STATUS, statusCategory } from "./status.js";

/** A DIMSE operation that ended with a failure status. */
export class DimseError extends Error {
  constructor(operation, status, comment = "") {
    super(`${operation} failed: ${describeStatus(status, operation)}${comment ? ` - ${comment}` : ""}`);
    this.name = "DimseError";
    this.status = status;
    this.comment = comment;
  }
}

/** A queue that an async iterator drains: responses to one request. */
class ResponseQueue {
  constructor() {
    this.items = [];
    this.waiters = [];
    this.error = null;
  }

  push(item) {
    const waiter = this.waiters.shift();
    if (waiter) waiter.resolve(item);
    else this.items.push(item);
  }

  fail(error) {
    this.error = error;
    for (const w of this.waiters.splice(0)) w.reject(error);
  }

  next() {
    if (this.items.length) return Promise.resolve(this.items.shift());
    if (this.error) return Promise.reject(this.error);
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }
}

export class DimseService {
  /**
   * handlers: {[CommandField of a request]: async (message, service) => response}
   * where response is {status, dataset?, ...command elements}.
   */
  constructor(association, { handlers = {}, timeout = 60000 } = {}) {
    this.association = association;
    this.handlers = handlers;
    this.timeout = timeout;
    this.messageId = 0;
    this.pending = new Map();
    this.incoming = Promise.resolve();
    association.onMessage = (message) => this.receive(message);
    association.closed.then(({ error }) => {
      const why = error || new AssociationError("association released", "closed");
      for (const queue of this.pending.values()) queue.fail(why);
      this.pending.clear();
    });
  }

  nextMessageId() {
    this.messageId = (this.messageId % 0xffff) + 1;
    return this.messageId;
  }

  receive(message) {
    const { command } = message;
    if (isResponse(command)) {
      const queue = this.pending.get(command.MessageIDBeingRespondedTo);
      if (queue) queue.push(message);
      return;
    }
    // Requests are handled one at a time, in the order they arrived.
    this.incoming = this.incoming
      .then(() => this.handle(message))
      .catch((error) => {
        this.association.log(`handling ${command.CommandField} failed: ${error.message}`);
      });
  }

  async handle(message) {
    const { command, contextId } = message;
    const field = command.CommandField;
    if (field === COMMAND.C_CANCEL_RQ) return;
    const handler = this.handlers[field];
    const responseField = field | 0x8000;
    let response;
    if (!handler) response = { status: STATUS.UNRECOGNIZED_OPERATION };
    else {
      try {
        response = await handler(message, this);
      } catch (error) {
        // Whatever was thrown (an Error, a DOMException, null), the peer gets a failure.
        const why = String(error?.message || error || "processing failed");
        response = { status: STATUS.PROCESSING_FAILURE, ErrorComment: why.slice(0, 64) };
      }
    }
    const { status, dataset = null, ...extra } = response;
    const reply = {
      AffectedSOPClassUID: command.AffectedSOPClassUID,
      CommandField: responseField,
      MessageIDBeingRespondedTo: command.MessageID,
      CommandDataSetType: dataset ? DATASET_PRESENT : NO_DATASET,
      Status: status,
      AffectedSOPInstanceUID: command.AffectedSOPInstanceUID,
      ...extra,
    };
    if (this.association.isEstablished) await this.association.sendMessage(contextId, encodeCommand(reply), dataset);
  }

  /**
   * Send a request; returns an async iterator of its responses, ending after the
   * first non-pending one. `command` lacks MessageID, which is assigned here.
   */
  request(contextId, command, dataset = null) {
    const messageId = this.nextMessageId();
    const queue = new ResponseQueue();
    this.pending.set(messageId, queue);
    const full = { ...command, MessageID: messageId, CommandDataSetType: dataset ? DATASET_PRESENT : NO_DATASET };
    const sent = this.association
      .sendMessage(contextId, encodeCommand(full), dataset)
      .catch((error) => queue.fail(error));
    const service = this;
    return {
      messageId,
      sent,
      async *[Symbol.asyncIterator]() {
        try {
          for (;;) {
            const message = await service.withTimeout(queue.next());
            yield message;
            if (statusCategory(message.command.Status) !== "pending") return;
          }
        } finally {
          service.pending.delete(messageId);
        }
      },
    };
  }

  /** C-CANCEL-RQ for an outstanding C-FIND/C-MOVE/C-GET (PS3.7 9.3.2.3). */
  cancel(contextId, messageId) {
    return this.association.sendMessage(
      contextId,
      encodeCommand({
        CommandField: COMMAND.C_CANCEL_RQ,
        MessageIDBeingRespondedTo: messageId,
        CommandDataSetType: NO_DATASET,
      }),
    );
  }

  withTimeout(promise) {
    if (!this.timeout) return promise;
    let timer;
    const expiry = new Promise((_, reject) => {
      timer = setTimeout(() => {
        reject(new AssociationError(`no DIMSE response within ${this.timeout} ms`, "timeout"));
        this.association.abort();
      }, this.timeout);
    });
    return Promise.race([promise, expiry]).finally(() => clearTimeout(timer));
  }
}
