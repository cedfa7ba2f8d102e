/**
 * Presentation context negotiation (PS3.8 7.1.1.13, 9.3.2.2, 9.3.3.2) and
 * SCP/SCU role selection (PS3.7 D.3.3.4).
 */
import { CONTEXT_RESULT } from "./pdu.js";

export const MAX_PRESENTATION_CONTEXTS = 128;

/**
 * Number proposed contexts 1, 3, 5, … (PS3.8 9.3.2.2: odd IDs 1-255).
 * Each proposal: {abstractSyntax, transferSyntaxes, scpRole?}.
 */
export function proposeContexts(proposals) {
  if (proposals.length === 0) throw new RangeError("propose at least one presentation context");
  if (proposals.length > MAX_PRESENTATION_CONTEXTS) {
    throw new RangeError(`${proposals.length} presentation contexts proposed; at most ${MAX_PRESENTATION_CONTEXTS}`);
  }
  return proposals.map((p, i) => ({
    id: 2 * i + 1,
    abstractSyntax: p.abstractSyntax,
    transferSyntaxes: [...p.transferSyntaxes],
  }));
}

/** Role selection items for proposals that ask for the SCP role (e.g. storage under C-GET). */
export function proposeRoles(proposals) {
  const seen = new Set();
  const roles = [];
  for (const p of proposals) {
    if (p.scpRole && !seen.has(p.abstractSyntax)) {
      seen.add(p.abstractSyntax);
      roles.push({ sopClass: p.abstractSyntax, scu: false, scp: true });
    }
  }
  return roles;
}

/**
 * Acceptor side: answer each proposed context. `supports(abstractSyntax)` returns
 * the transfer syntaxes accepted for it (empty/null = abstract syntax not
 * supported); the proposer's order decides among them, so data is kept as sent.
 */
export function acceptContexts(proposed, supports) {
  return proposed.map((pc) => {
    const accepted = supports(pc.abstractSyntax);
    if (!accepted || accepted.length === 0) {
      return { id: pc.id, result: CONTEXT_RESULT.ABSTRACT_SYNTAX_NOT_SUPPORTED, transferSyntax: "" };
    }
    const ts = pc.transferSyntaxes.find((t) => accepted.includes(t));
    if (!ts) return { id: pc.id, result: CONTEXT_RESULT.TRANSFER_SYNTAXES_NOT_SUPPORTED, transferSyntax: "" };
    return { id: pc.id, result: CONTEXT_RESULT.ACCEPTANCE, transferSyntax: ts };
  });
}

/**
 * The agreed contexts of an association: Map id → {id, abstractSyntax, transferSyntax,
 * accepted, result}, from what was proposed and what the acceptor answered.
 */
export function agreedContexts(proposed, answered) {
  const byId = new Map(proposed.map((pc) => [pc.id, pc]));
  const out = new Map();
  for (const ac of answered) {
    const rq = byId.get(ac.id);
    if (!rq) continue; // an answer to a context never proposed is ignored
    const accepted = ac.result === CONTEXT_RESULT.ACCEPTANCE;
    if (accepted && !rq.transferSyntaxes.includes(ac.transferSyntax)) continue;
    out.set(ac.id, {
      id: ac.id,
      abstractSyntax: rq.abstractSyntax,
      transferSyntax: ac.transferSyntax,
      accepted,
      result: ac.result,
    });
  }
  return out;
}

/** Pick an accepted context for an abstract syntax, preferring the given transfer syntaxes in order. */
export function findContext(contexts, abstractSyntax, transferSyntaxes = null) {
  const candidates = [...contexts.values()].filter((c) => c.accepted && c.abstractSyntax === abstractSyntax);
  if (!transferSyntaxes) return candidates[0] || null;
  for (const ts of transferSyntaxes) {
    const found = candidates.find((c) => c.transferSyntax === ts);
    if (found) return found;
  }
  return null;
}
