// The DICOM node page: register an AE title, watch callers and received instances, query and
// retrieve from a peer, send instances on. Everything DICOM goes through dicomnet/ and the
// gateway's WebSockets (docs/dicom-websocket.md).

import * as dicomnet from "../dicomnet/index.js";
import { $ } from "../js/dom.js";
import { register, unregister } from "./incoming.js";
import { datasetDigests, deleteSelected, selectAll, sendSelected, showInstances, uploadSelected } from "./instances.js";
import { echoPeer, findOnPeer } from "./query.js";
import { say, session, startSession } from "./session.js";

async function main() {
  try {
    await startSession();
  } catch (error) {
    say("node-status", `The DICOM gateway is not available: ${error.message}`, true);
    return;
  }
  const peers = $("#peer");
  peers.replaceChildren(...session.info.peers.map((aet) => new Option(aet, aet)));
  if (!session.info.peers.length)
    say("peer-status", "This server lets this browser reach no peer (dicom_ws_peers).", true);
  await showInstances();

  $("#register").addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      await register($("#aet").value.trim());
    } catch (error) {
      say("node-status", `Could not register: ${error.message}`, true);
    }
  });
  $("#unregister-button").addEventListener("click", unregister);
  $("#echo-button").addEventListener("click", () => echoPeer(peers.value));
  $("#query").addEventListener("submit", (event) => {
    event.preventDefault();
    findOnPeer(peers.value, event.target);
  });
  $("#select-all").addEventListener("click", selectAll);
  $("#send-button").addEventListener("click", () => sendSelected(peers.value));
  $("#upload-button").addEventListener("click", uploadSelected);
  $("#delete-button").addEventListener("click", deleteSelected);
  $("#image-dialog [data-role=close]").addEventListener("click", () => $("#image-dialog").close());
  document.body.dataset.ready = "true";
}

// For scripts and tests driving the page: the library, the session and a digest of what is stored.
window.dicomNode = { dicomnet, session, datasetDigests };
main();
