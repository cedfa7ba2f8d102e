// The signalling proofs of a share link (docs/p2p.md, "Signalling and the fingerprint
// binding"): HMAC-SHA256 keyed with the link's secret over the DTLS fingerprints of the SDPs,
// computed and checked with WebCrypto (which exists only in secure contexts: HTTPS or
// localhost).

const CONTEXT = "isthmus-p2p/1";
const FINGERPRINT = /^a=fingerprint:sha-256 ([0-9A-Fa-f:]+)\s*$/m;
const utf8 = new TextEncoder();

/** The SHA-256 certificate fingerprint an SDP announces (RFC 8122), upper case. */
export function fingerprint(sdp) {
  const found = FINGERPRINT.exec(sdp);
  if (!found) throw new Error("the SDP has no a=fingerprint:sha-256 line");
  return found[1].toUpperCase();
}

function key(secret, use) {
  if (!globalThis.crypto?.subtle)
    throw new Error("this page needs a secure context (HTTPS, or the node on localhost) for WebCrypto");
  return crypto.subtle.importKey("raw", utf8.encode(secret), { name: "HMAC", hash: "SHA-256" }, false, [use]);
}

const message = (fields) => utf8.encode([CONTEXT, ...fields].join("\n"));

export function hex(buffer) {
  return [...new Uint8Array(buffer)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** P1 = HMAC(SECRET, "isthmus-p2p/1" LF "offer" LF LINK_ID LF FP(OFFER)), hex. */
export async function offerProof(secret, linkId, offerSdp) {
  const signature = await crypto.subtle.sign(
    "HMAC",
    await key(secret, "sign"),
    message(["offer", linkId, fingerprint(offerSdp)]),
  );
  return hex(signature);
}

/** Whether `proof` is P2 for this offer and answer (WebCrypto's verify compares in constant time). */
export async function answerProofValid(secret, linkId, offerSdp, answerSdp, proof) {
  if (typeof proof !== "string" || !/^[0-9a-f]{64}$/.test(proof)) return false;
  const bytes = new Uint8Array(proof.match(/../g).map((b) => Number.parseInt(b, 16)));
  const data = message(["answer", linkId, fingerprint(offerSdp), fingerprint(answerSdp)]);
  return crypto.subtle.verify("HMAC", await key(secret, "verify"), bytes, data);
}
