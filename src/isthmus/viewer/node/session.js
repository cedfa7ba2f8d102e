// What the page's parts share: the gateway client, the instance store, this node's AE title,
// and running one operation on one association to a peer.

import { Gateway, InstanceStore } from "../dicomnet/index.js";
import { askToken, getToken } from "../js/auth.js";

export const session = {
  gateway: null,
  store: null,
  info: null, // GET /dicom-ws/peers
  aet: "",
  listener: null,
};

/** Open the store and learn what the gateway allows, asking for a token when it says 401. */
export async function startSession() {
  session.store = await new InstanceStore().open();
  for (let attempt = 0; ; attempt++) {
    session.gateway = new Gateway({ token: getToken() || null });
    try {
      session.info = await session.gateway.info();
      return session;
    } catch (error) {
      const needsToken = /token|authentication|401/i.test(error.message);
      if (!needsToken || attempt >= 3) throw error;
      if (!(await askToken(`The DICOM gateway needs an API token with the dicom-ws permission (${error.message}).`)))
        throw error;
    }
  }
}

/** The AE title this node calls as: the registered one, or the one typed in. */
export function callingAET() {
  return session.aet || document.getElementById("aet").value.trim() || "BROWSER";
}

/**
 * Run `work(service)` on a new association to `peer`, releasing it afterwards (aborting if
 * release fails). Errors say what the peer or the gateway answered.
 */
export async function withAssociation(peer, proposals, work, handlers = {}) {
  const { association, service } = await session.gateway.associate(peer, {
    callingAET: callingAET(),
    proposals,
    handlers,
    maxPDU: session.info.max_pdu,
  });
  try {
    return await work(service, association);
  } finally {
    if (association.isEstablished) await association.release().catch(() => association.abort());
  }
}

/** Put a message in a status line; `error` marks it as one. */
export function say(id, message, error = false) {
  const el = document.getElementById(id);
  el.textContent = message;
  el.classList.toggle("error", error);
}
