// The worklist page's model: rows from work items, their order, the search parameters.

import assert from "node:assert/strict";
import { test } from "node:test";

import {
  sortWorkitems,
  workitemRow,
  worklistFromUrl,
  worklistParams,
  worklistToUrl,
} from "../../../src/isthmus/viewer/js/worklist.js";

const code = (value) => ({ "00080100": { vr: "SH", Value: [value] } });
const item = (start, modality, name, state = "SCHEDULED") => ({
  "00080018": { vr: "UI", Value: [`1.2.${start}.${modality.length}`] },
  "00100010": { vr: "PN", Value: [{ Alphabetic: name }] },
  "00404005": { vr: "DT", Value: [start] },
  "00404026": { vr: "SQ", Value: [code(modality)] },
  "0040A370": { vr: "SQ", Value: [{ "00080050": { vr: "SH", Value: ["A1"] } }] },
  "00741000": { vr: "CS", Value: [state] },
});

test("a work item becomes a row with its date, time, modality and state", () => {
  const row = workitemRow(item("202601020930", "CT", "DOE^JANE", "IN PROGRESS"));
  assert.equal(row.date, "20260102");
  assert.equal(row.time, "09:30");
  assert.equal(row.modality, "CT");
  assert.equal(row.patient, "DOE, JANE");
  assert.equal(row.accession, "A1");
  assert.equal(row.state, "IN PROGRESS");
  assert.equal(workitemRow({}).modality, "");
});

test("rows are ordered by scheduled date and time, then modality", () => {
  const rows = [item("202601030800", "CT", "C"), item("202601020930", "US", "B"), item("202601020930", "CT", "A")];
  assert.deepEqual(
    sortWorkitems(rows.map(workitemRow)).map((r) => r.patient),
    ["A", "B", "C"],
  );
});

test("the filter survives the URL and becomes UPS-RS search keys", () => {
  const state = worklistFromUrl("?view=worklist&date=20260102&modality=CT&state=SCHEDULED");
  assert.deepEqual(state, { date: "20260102", modality: "CT", state: "SCHEDULED" });
  assert.equal(worklistToUrl(state), "?view=worklist&date=20260102&modality=CT&state=SCHEDULED");
  const params = worklistParams(state);
  assert.equal(params.get("ScheduledProcedureStepStartDateTime"), "20260102");
  assert.equal(params.get("ScheduledStationClassCodeSequence.CodeValue"), "CT");
  assert.equal(params.get("ProcedureStepState"), "SCHEDULED");
  assert.equal(worklistParams({}).has("ProcedureStepState"), false);
});
