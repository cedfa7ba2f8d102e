// The worklist: the archive's work items (UPS-RS search, PS3.18 11.9) by scheduled date
// and modality, each with its state. URL: "./?view=worklist&date=YYYYMMDD&modality=CT".
// The pure functions (rows, parameters, order) are exported for Node's tests.

import { formatDate, items, personName, text, toDicomDate } from "./dicomjson.js";
import { $, h, navigate } from "./dom.js";

export const WORKITEM_TAG = Object.freeze({
  SOPInstanceUID: "00080018",
  PatientName: "00100010",
  PatientID: "00100020",
  ScheduledStart: "00404005",
  StationName: "00404025",
  StationClass: "00404026",
  ReferencedRequest: "0040A370",
  AccessionNumber: "00080050",
  CodeValue: "00080100",
  ProcedureStepState: "00741000",
  ProcedureStepLabel: "00741204",
  Priority: "00741200",
  ProgressInformation: "00741002",
  Progress: "00741004",
});
const T = WORKITEM_TAG;
export const STATES = ["SCHEDULED", "IN PROGRESS", "COMPLETED", "CANCELED"];

const firstCode = (meta, tag) => text(items(meta, tag)[0] || {}, T.CodeValue);

/** One work item (DICOM JSON) as the row the table shows. */
export function workitemRow(meta) {
  const start = text(meta, T.ScheduledStart);
  const progress = items(meta, T.ProgressInformation)[0];
  return {
    uid: text(meta, T.SOPInstanceUID),
    date: start.slice(0, 8),
    time: start.length >= 12 ? `${start.slice(8, 10)}:${start.slice(10, 12)}` : "",
    modality: firstCode(meta, T.StationClass),
    station: firstCode(meta, T.StationName),
    patient: personName(text(meta, T.PatientName)),
    patientId: text(meta, T.PatientID),
    accession: text(items(meta, T.ReferencedRequest)[0] || {}, T.AccessionNumber),
    label: text(meta, T.ProcedureStepLabel),
    priority: text(meta, T.Priority),
    state: text(meta, T.ProcedureStepState),
    progress: progress ? text(progress, T.Progress) : "",
  };
}

/** By scheduled date and time, then modality, then patient. */
export function sortWorkitems(rows) {
  const key = (r) => [r.date, r.time, r.modality, r.patient];
  return [...rows].sort((a, b) => {
    const ka = key(a);
    const kb = key(b);
    for (let i = 0; i < ka.length; i++) {
      if (ka[i] !== kb[i]) return ka[i] < kb[i] ? -1 : 1;
    }
    return 0;
  });
}

/** The filter in the URL → UPS-RS search parameters (QIDO-style keys). */
export function worklistParams(state) {
  const params = new URLSearchParams();
  if (state.date) params.set("ScheduledProcedureStepStartDateTime", state.date);
  if (state.modality) params.set("ScheduledStationClassCodeSequence.CodeValue", state.modality);
  if (state.state) params.set("ProcedureStepState", state.state);
  params.set("limit", "1000");
  return params;
}

export function worklistFromUrl(search) {
  const p = new URLSearchParams(search);
  return { date: p.get("date") || "", modality: p.get("modality") || "", state: p.get("state") || "" };
}

export function worklistToUrl(state) {
  const p = new URLSearchParams({ view: "worklist" });
  for (const k of ["date", "modality", "state"]) if (state[k]) p.set(k, state[k]);
  return `?${p}`;
}

const isoDate = (da) => (da && da.length === 8 ? `${da.slice(0, 4)}-${da.slice(4, 6)}-${da.slice(6, 8)}` : "");

export class WorklistView {
  constructor(api, root) {
    this.api = api;
    this.root = root;
    this.form = $("#worklist-search", root);
    this.status = $("#worklist-status", root);
    this.body = $("#worklist tbody", root);
    this.form.addEventListener("submit", (e) => {
      e.preventDefault();
      this.submit();
    });
    this.form.addEventListener("change", () => this.submit());
  }

  show(search) {
    this.root.hidden = false;
    document.title = "Worklist · Isthmus";
    this.state = worklistFromUrl(search);
    const f = this.form.elements;
    f.date.value = isoDate(this.state.date);
    f.modality.value = this.state.modality;
    f.state.value = this.state.state;
    this.load();
  }

  hide() {
    this.root.hidden = true;
  }

  submit() {
    const f = this.form.elements;
    const state = { date: toDicomDate(f.date.value), modality: f.modality.value, state: f.state.value };
    navigate(`./${worklistToUrl(state)}`, { replace: true });
  }

  async load() {
    this.controller?.abort();
    const controller = new AbortController();
    this.controller = controller;
    this.setStatus("Loading the worklist…");
    try {
      const { results } = await this.api.searchWorkitems(worklistParams(this.state), controller.signal);
      if (controller.signal.aborted) return;
      this.render(sortWorkitems(results.map(workitemRow)));
    } catch (err) {
      if (err.name === "AbortError") return;
      this.render([]);
      this.setStatus(`The worklist could not be loaded: ${err.message}`, true);
    }
  }

  render(rows) {
    this.body.replaceChildren(...rows.map((r) => this.row(r)));
    const n = rows.length;
    this.setStatus(n === 0 ? "No work items match." : `${n} work item${n === 1 ? "" : "s"}`);
  }

  row(r) {
    const state = r.state.toLowerCase().replace(" ", "-");
    const progress = r.state === "IN PROGRESS" && r.progress ? ` ${r.progress}%` : "";
    return h(
      "tr",
      { "data-workitem": r.uid },
      h("td", { "data-label": "Date" }, formatDate(r.date)),
      h("td", { "data-label": "Time" }, r.time),
      h("td", { "data-label": "Modality" }, r.modality),
      h("td", { "data-label": "Station" }, r.station),
      h("td", { "data-label": "Patient" }, r.patient || "(no name)"),
      h("td", { "data-label": "ID" }, r.patientId),
      h("td", { "data-label": "Accession" }, r.accession),
      h("td", { "data-label": "Procedure" }, r.label),
      h("td", { "data-label": "State" }, h("span", { class: `state state-${state}` }, r.state + progress)),
    );
  }

  setStatus(message, error = false) {
    this.status.textContent = message;
    this.status.classList.toggle("error", error);
  }
}
