// The study search: form state ⇄ page URL (so a search can be shared) ⇄ QIDO-RS parameters
// (PS3.18 8.3.4: attribute matching, includefield, limit), plus sorting and paging of results.

import { num, TAG, text, value } from "./dicomjson.js";

/** Search fields, named by their DICOM keywords so the URL reads like a QIDO query. */
export const FIELDS = ["PatientName", "PatientID", "AccessionNumber", "StudyDate", "ModalitiesInStudy"];
export const SORT_KEYS = [
  "PatientName",
  "PatientID",
  "StudyDate",
  "StudyDescription",
  "AccessionNumber",
  "ModalitiesInStudy",
  "NumberOfStudyRelatedSeries",
  "NumberOfStudyRelatedInstances",
];
export const DEFAULT_SORT = "-StudyDate";
export const PAGE_SIZE = 25;
/** Studies fetched per search; sorting and paging happen over these in the browser. */
export const FETCH_LIMIT = 1000;

/** Search state from the page's query string. */
export function searchFromUrl(search) {
  const params = new URLSearchParams(search);
  const state = {};
  for (const f of FIELDS) state[f] = (params.get(f) ?? "").trim();
  const sort = params.get("sort") ?? DEFAULT_SORT;
  state.sort = SORT_KEYS.includes(sort.replace(/^-/, "")) ? sort : DEFAULT_SORT;
  state.page = Math.max(1, parseInt(params.get("page") ?? "1", 10) || 1);
  return state;
}

/** The query string for a search state (defaults left out, so links stay short). */
export function searchToUrl(state) {
  const params = new URLSearchParams();
  for (const f of FIELDS) if (state[f]) params.set(f, state[f]);
  if (state.sort && state.sort !== DEFAULT_SORT) params.set("sort", state.sort);
  if (state.page > 1) params.set("page", String(state.page));
  const s = params.toString();
  return s ? `?${s}` : "";
}

/** "SMITH" → "SMITH*": a name without wildcards matches as a prefix; wildcards are kept. */
export function nameMatch(name) {
  const n = name.trim();
  if (!n || /[*?]/.test(n)) return n;
  return `${n}*`;
}

/** A date range for QIDO (PS3.4 C.2.2.2.5): "20200101-20201231", "20200101-", "-20201231". */
export function dateRange(from, to) {
  const a = (from ?? "").replaceAll("-", "");
  const b = (to ?? "").replaceAll("-", "");
  if (!a && !b) return "";
  if (a && a === b) return a;
  return `${a}-${b}`;
}

/** [from, to] as yyyy-mm-dd from a StudyDate match value. */
export function splitDateRange(range) {
  const iso = (d) => (/^\d{8}$/.test(d) ? `${d.slice(0, 4)}-${d.slice(4, 6)}-${d.slice(6, 8)}` : "");
  if (!range) return ["", ""];
  if (!range.includes("-")) return [iso(range), iso(range)];
  const [a, b] = range.split("-");
  return [iso(a), iso(b)];
}

/** QIDO-RS /studies parameters for a search state. */
export function qidoParams(state, limit = FETCH_LIMIT) {
  const params = new URLSearchParams();
  if (state.PatientName) params.set("PatientName", nameMatch(state.PatientName));
  for (const f of ["PatientID", "AccessionNumber", "StudyDate"]) if (state[f]) params.set(f, state[f]);
  if (state.ModalitiesInStudy) params.set("ModalitiesInStudy", state.ModalitiesInStudy.toUpperCase());
  for (const f of [
    "StudyDescription",
    "ModalitiesInStudy",
    "NumberOfStudyRelatedSeries",
    "NumberOfStudyRelatedInstances",
    "PatientBirthDate",
    "PatientSex",
  ])
    params.append("includefield", f);
  params.set("limit", String(limit + 1)); // one more than shown tells us the list was cut
  return params;
}

/** The fields of a QIDO study result the list shows and sorts by. */
export function studyRow(meta) {
  return {
    studyUid: text(meta, TAG.StudyInstanceUID),
    PatientName: text(meta, TAG.PatientName),
    PatientID: text(meta, TAG.PatientID),
    StudyDate: text(meta, TAG.StudyDate),
    StudyTime: text(meta, TAG.StudyTime),
    StudyDescription: text(meta, TAG.StudyDescription),
    AccessionNumber: text(meta, TAG.AccessionNumber),
    ModalitiesInStudy: text(meta, TAG.ModalitiesInStudy).split("\\").filter(Boolean).join(", "),
    NumberOfStudyRelatedSeries: num(meta, TAG.NumberOfStudyRelatedSeries, 0),
    NumberOfStudyRelatedInstances: num(meta, TAG.NumberOfStudyRelatedInstances, 0),
    PatientBirthDate: String(value(meta, TAG.PatientBirthDate, 0, "")),
  };
}

/** Rows sorted by "Key" (ascending) or "-Key" (descending); ties by date and time, newest first. */
export function sortRows(rows, sort) {
  const desc = sort.startsWith("-");
  const key = sort.replace(/^-/, "");
  const collator = new Intl.Collator(undefined, { sensitivity: "base", numeric: true });
  const cmp = (a, b) =>
    typeof a === "number" && typeof b === "number" ? a - b : collator.compare(String(a), String(b));
  return [...rows].sort((a, b) => {
    const primary = cmp(a[key], b[key]) * (desc ? -1 : 1);
    return primary || cmp(b.StudyDate + b.StudyTime, a.StudyDate + a.StudyTime);
  });
}

/** One page of rows and the page count (pages count from 1; out of range is clamped). */
export function pageOf(rows, page, size = PAGE_SIZE) {
  const pages = Math.max(1, Math.ceil(rows.length / size));
  const current = Math.min(Math.max(1, page), pages);
  return { rows: rows.slice((current - 1) * size, current * size), page: current, pages };
}
