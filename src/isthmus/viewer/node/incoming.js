// Registering this browser's AE title with the gateway, and the live log of who calls it.

import { COMMAND, echoHandler, storageNodePolicy, storeHandler } from "../dicomnet/index.js";
import { h } from "../js/dom.js";
import { saveInstance } from "./instances.js";
import { say, session } from "./session.js";

/** Register `aet`: callers can C-ECHO it, C-STORE to it and C-MOVE to it. */
export async function register(aet) {
  say("node-status", `Registering ${aet}…`);
  session.listener = await session.gateway.listen(aet, {
    decide: storageNodePolicy(aet),
    handlers: (info) => ({
      [COMMAND.C_ECHO_RQ]: echoHandler(),
      [COMMAND.C_STORE_RQ]: storeHandler(async (instance) => {
        await saveInstance(instance);
        info.count = (info.count || 0) + 1;
        info.update?.();
      }),
    }),
    onAssociation: logAssociation,
    onClose: ({ reason }) => {
      if (session.aet !== aet) return;
      session.aet = "";
      session.listener = null;
      showRegistered(false);
      say("node-status", `Unregistered: ${reason}`, true);
    },
    maxPDU: session.info.max_pdu,
  });
  session.aet = aet;
  showRegistered(true);
  const port = session.info.dicom_port;
  say(
    "node-status",
    `Registered as ${aet}: reachable on the DICOM port ${port} of this server (called AE title ${aet}).`,
  );
}

export function unregister() {
  const listener = session.listener;
  session.aet = "";
  session.listener = null;
  listener?.close();
  showRegistered(false);
  say("node-status", "Not registered: peers cannot reach this browser.");
}

function showRegistered(on) {
  document.getElementById("register-button").hidden = on;
  document.getElementById("unregister-button").hidden = !on;
  document.getElementById("aet").disabled = on;
}

/** One line per incoming association, updated as it goes. */
function logAssociation(info) {
  const started = new Date().toLocaleTimeString();
  const li = h("li", {}, "");
  const text = (state) =>
    `${started} ${info.calling} → ${info.called} (${info.address}): ${state}` +
    (info.count ? `, ${info.count} instance${info.count === 1 ? "" : "s"} received` : "");
  let state = "negotiating";
  let pending = null;
  const show = () => {
    pending = null;
    li.textContent = text(state);
  };
  // At most a few updates a second while instances stream in.
  info.update = () => {
    if (!pending) pending = setTimeout(show, 250);
  };
  info.update();
  document.getElementById("incoming").prepend(li);
  info.association.established.then(
    () => {
      state = "accepted";
      info.update();
    },
    () => {},
  );
  info.association.closed.then(({ released, error }) => {
    state = released ? "released" : `ended: ${error ? error.message : "closed"}`;
    li.classList.toggle("bad", !released);
    info.update();
  });
}
