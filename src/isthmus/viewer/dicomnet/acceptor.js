/**
 * What a browser DICOM node accepts when called (PS3.8 7.1.1.13): Verification and
 * every storage SOP class, in the transfer syntaxes it can keep byte for byte.
 */
import { acceptContexts } from "./negotiation.js";
import { REJECT } from "./pdu.js";
import { isStorageSOPClass, SOP, STORABLE_TRANSFER_SYNTAXES, UNCOMPRESSED } from "./uids.js";

/**
 * An A-ASSOCIATE-RQ decision function for Association.accept: rejects a called AE
 * title other than `aet` (PS3.8 Table 9-21 reason 7) and answers each context.
 */
export function storageNodePolicy(aet) {
  return (rq) => {
    if (rq.calledAET !== aet) {
      return {
        reject: {
          result: REJECT.RESULT_PERMANENT,
          source: REJECT.SOURCE_USER,
          reason: REJECT.REASON_CALLED_AE_NOT_RECOGNIZED,
        },
      };
    }
    const contexts = acceptContexts(rq.presentationContexts, (abstractSyntax) => {
      if (abstractSyntax === SOP.VERIFICATION) return UNCOMPRESSED;
      if (isStorageSOPClass(abstractSyntax)) return STORABLE_TRANSFER_SYNTAXES;
      return null;
    });
    return { contexts };
  };
}
