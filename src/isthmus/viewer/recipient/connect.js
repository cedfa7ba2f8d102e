// Signalling for a share link, the browser as the offerer (docs/p2p.md): ICE settings from
// GET /api/p2p/ID/ice (404: defaults), a data channel "isthmus-p2p" (reliable, ordered),
// every candidate gathered before the offer goes (no trickle), POST /api/p2p/ID/offer with
// P1, and the answer applied only when its P2 proves the sharing node holds the secret.

import { Mailbox } from "./mailbox.js";
import { answerProofValid, offerProof } from "./proof.js";

export const LABEL = "isthmus-p2p";
const GATHER_MS = 10_000;
const OPEN_MS = 20_000;

/** A failure the page shows as it is (the sharing node's message, or ours). */
export class ShareError extends Error {}

/** RTCConfiguration from the node's /ice answer; defaults when it has none (404) or fails. */
export async function iceConfiguration(linkId) {
  try {
    const response = await fetch(`api/p2p/${encodeURIComponent(linkId)}/ice`, { cache: "no-store" });
    if (!response.ok) return { iceServers: [], iceTransportPolicy: "all" };
    const doc = await response.json();
    const iceServers = (Array.isArray(doc.ice_servers) ? doc.ice_servers : []).map((s) => ({
      urls: s.urls,
      ...(s.username !== undefined ? { username: s.username } : {}),
      ...(s.credential !== undefined ? { credential: s.credential } : {}),
    }));
    return { iceServers, iceTransportPolicy: doc.relay_only ? "relay" : "all" };
  } catch {
    return { iceServers: [], iceTransportPolicy: "all" };
  }
}

function gathered(pc) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, GATHER_MS); // send what was gathered
    pc.addEventListener("icegatheringstatechange", () => {
      if (pc.iceGatheringState === "complete") {
        clearTimeout(timer);
        resolve();
      }
    });
  });
}

async function postOffer(linkId, sdp, proof) {
  let response;
  try {
    response = await fetch(`api/p2p/${encodeURIComponent(linkId)}/offer`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ sdp, proof }),
      cache: "no-store",
    });
  } catch (error) {
    throw new ShareError(`the sharing node cannot be reached (${error.message})`);
  }
  const doc = await response.json().catch(() => ({}));
  if (!response.ok) throw new ShareError(doc.message || `the sharing node answered HTTP ${response.status}`);
  return doc;
}

function opened(pc, channel) {
  if (channel.readyState === "open") return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () =>
        reject(
          new ShareError(`no WebRTC connection within ${OPEN_MS / 1000} s (no network path to the sharing node?)`),
        ),
      OPEN_MS,
    );
    channel.addEventListener("open", () => {
      clearTimeout(timer);
      resolve();
    });
    pc.addEventListener("connectionstatechange", () => {
      if (pc.connectionState === "failed") {
        clearTimeout(timer);
        reject(new ShareError("the WebRTC connection failed (no network path to the sharing node?)"));
      }
    });
  });
}

/**
 * Connect to the sharing node of `linkId`; resolves to {pc, channel, mail} once the channel
 * is open, `mail` holding every message since the channel was created (mailbox.js).
 */
export async function connect(linkId, secret) {
  const pc = new RTCPeerConnection(await iceConfiguration(linkId));
  const channel = pc.createDataChannel(LABEL, { ordered: true });
  channel.binaryType = "arraybuffer";
  const mail = new Mailbox(channel);
  try {
    await pc.setLocalDescription(await pc.createOffer());
    await gathered(pc);
    const offer = pc.localDescription.sdp;
    const answer = await postOffer(linkId, offer, await offerProof(secret, linkId, offer));
    if (typeof answer.sdp !== "string" || !(await answerProofValid(secret, linkId, offer, answer.sdp, answer.proof)))
      throw new ShareError("the answer does not prove knowledge of the link's secret: not connecting");
    await pc.setRemoteDescription({ type: "answer", sdp: answer.sdp });
    await opened(pc, channel);
    return { pc, channel, mail };
  } catch (error) {
    pc.close();
    throw error;
  }
}
