/**
 * The DICOM upper layer state machine (PS3.8 9.2.3, Tables 9-9 and 9-10) as data.
 *
 * `actionFor(event, state)` gives the action PS3.8 prescribes, or null when the
 * event is not allowed in that state (a local usage error for primitives from
 * the user). The Association class executes the actions.
 */

export const STATES = Object.freeze({
  Sta1: "Idle",
  Sta2: "Transport connection open (awaiting A-ASSOCIATE-RQ PDU)",
  Sta3: "Awaiting local A-ASSOCIATE response primitive",
  Sta4: "Awaiting transport connection opening to complete",
  Sta5: "Awaiting A-ASSOCIATE-AC or A-ASSOCIATE-RJ PDU",
  Sta6: "Association established and ready for data transfer",
  Sta7: "Awaiting A-RELEASE-RP PDU",
  Sta8: "Awaiting local A-RELEASE response primitive",
  Sta9: "Release collision requestor side; awaiting A-RELEASE response primitive",
  Sta10: "Release collision acceptor side; awaiting A-RELEASE-RP PDU",
  Sta11: "Release collision requestor side; awaiting A-RELEASE-RP PDU",
  Sta12: "Release collision acceptor side; awaiting A-RELEASE response primitive",
  Sta13: "Awaiting transport connection close indication",
});

export const EVENTS = Object.freeze({
  Evt1: "A-ASSOCIATE request (local user)",
  Evt2: "Transport connect confirmation (local transport service)",
  Evt3: "A-ASSOCIATE-AC PDU (received on transport connection)",
  Evt4: "A-ASSOCIATE-RJ PDU (received on transport connection)",
  Evt5: "Transport connection indication (local transport service)",
  Evt6: "A-ASSOCIATE-RQ PDU (received on transport connection)",
  Evt7: "A-ASSOCIATE response primitive (accept)",
  Evt8: "A-ASSOCIATE response primitive (reject)",
  Evt9: "P-DATA request primitive",
  Evt10: "P-DATA-TF PDU",
  Evt11: "A-RELEASE request primitive",
  Evt12: "A-RELEASE-RQ PDU (received on open transport connection)",
  Evt13: "A-RELEASE-RP PDU (received on transport connection)",
  Evt14: "A-RELEASE response primitive",
  Evt15: "A-ABORT request primitive",
  Evt16: "A-ABORT PDU (received on open transport connection)",
  Evt17: "Transport connection closed indication (local transport service)",
  Evt18: "ARTIM timer expired (Association reject/release timer)",
  Evt19: "Unrecognized or invalid PDU received",
});

/** The event a received PDU type raises (PS3.8 Table 9-10 rows). */
export const PDU_EVENT = Object.freeze({
  1: "Evt6",
  2: "Evt3",
  3: "Evt4",
  4: "Evt10",
  5: "Evt12",
  6: "Evt13",
  7: "Evt16",
});

const ALL = [
  "Sta1",
  "Sta2",
  "Sta3",
  "Sta4",
  "Sta5",
  "Sta6",
  "Sta7",
  "Sta8",
  "Sta9",
  "Sta10",
  "Sta11",
  "Sta12",
  "Sta13",
];

/** A row where a received PDU is unexpected everywhere but where `special` says. */
function pduRow(special) {
  const row = { Sta2: "AA-1", Sta13: "AA-6" };
  for (const s of ALL.slice(2, 12)) if (s !== "Sta4") row[s] = "AA-8";
  return { ...row, ...special };
}

/** PS3.8 Table 9-10: event → state → action. */
export const TRANSITIONS = Object.freeze({
  Evt1: { Sta1: "AE-1" },
  Evt2: { Sta4: "AE-2" },
  Evt3: pduRow({ Sta5: "AE-3" }),
  Evt4: pduRow({ Sta5: "AE-4" }),
  Evt5: { Sta1: "AE-5" },
  Evt6: pduRow({ Sta2: "AE-6", Sta13: "AA-7" }),
  Evt7: { Sta3: "AE-7" },
  Evt8: { Sta3: "AE-8" },
  Evt9: { Sta6: "DT-1", Sta8: "AR-7" },
  Evt10: pduRow({ Sta6: "DT-2", Sta7: "AR-6" }),
  Evt11: { Sta6: "AR-1" },
  Evt12: pduRow({ Sta6: "AR-2", Sta7: "AR-8" }),
  Evt13: pduRow({ Sta7: "AR-3", Sta10: "AR-10", Sta11: "AR-3" }),
  Evt14: { Sta8: "AR-4", Sta9: "AR-9", Sta12: "AR-4" },
  Evt15: Object.fromEntries(ALL.slice(2, 12).map((s) => [s, s === "Sta4" ? "AA-2" : "AA-1"])),
  Evt16: {
    Sta2: "AA-2",
    ...Object.fromEntries(
      ALL.slice(2, 12)
        .filter((s) => s !== "Sta4")
        .map((s) => [s, "AA-3"]),
    ),
    Sta13: "AA-2",
  },
  Evt17: { Sta2: "AA-5", ...Object.fromEntries(ALL.slice(2, 12).map((s) => [s, "AA-4"])), Sta13: "AR-5" },
  Evt18: { Sta2: "AA-2", Sta13: "AA-2" },
  Evt19: pduRow({ Sta13: "AA-7" }),
});

/** The action for `event` in `state`, or null when PS3.8 defines none. */
export function actionFor(event, state) {
  const row = TRANSITIONS[event];
  if (!row) throw new RangeError(`unknown event ${event}`);
  return row[state] || null;
}
