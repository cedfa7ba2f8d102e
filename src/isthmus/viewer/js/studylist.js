// The study list: a search form whose state lives in the URL, QIDO-RS /studies, sortable
// columns and pages. Results of one search are kept so sorting and paging need no request.

import { formatDate, personName } from "./dicomjson.js";
import { $, $$, h, navigate } from "./dom.js";
import {
  dateRange,
  FETCH_LIMIT,
  pageOf,
  qidoParams,
  searchFromUrl,
  searchToUrl,
  sortRows,
  splitDateRange,
  studyRow,
} from "./query.js";

export class StudyList {
  constructor(api, root) {
    this.api = api;
    this.root = root;
    this.form = $("#search", root);
    this.status = $("#list-status", root);
    this.body = $("#studies tbody", root);
    this.cache = { key: null, rows: [], truncated: false };
    this.controller = null;
    this.form.addEventListener("submit", (e) => {
      e.preventDefault();
      this.submit(false);
    });
    this.form.addEventListener("reset", () => setTimeout(() => this.submit(false)));
    this.form.addEventListener("input", (e) => {
      if (e.target.type === "date" || e.target.tagName === "SELECT") {
        this.submit(true);
        return;
      }
      clearTimeout(this.typing);
      this.typing = setTimeout(() => this.submit(true), 400);
    });
    for (const th of $$("th[data-sort]", root)) {
      th.querySelector("button").addEventListener("click", () => this.sortBy(th.dataset.sort));
    }
    this.body.addEventListener("click", (e) => {
      const row = e.target.closest("tr[data-study]");
      if (row && !e.target.closest("a")) navigate(`?study=${encodeURIComponent(row.dataset.study)}`);
    });
  }

  show(search) {
    this.root.hidden = false;
    document.title = "Studies · Isthmus";
    this.state = searchFromUrl(search);
    this.fillForm(this.state);
    this.load();
  }

  hide() {
    this.root.hidden = true;
  }

  refresh() {
    this.cache.key = null;
    this.load();
  }

  /**
   * Form → URL (→ route → show → load). The first change of a search adds a history entry,
   * further typing replaces it, so Back returns to the search before.
   */
  submit(typing) {
    const data = new FormData(this.form);
    const state = { sort: this.state?.sort, page: 1 };
    for (const f of ["PatientName", "PatientID", "AccessionNumber", "ModalitiesInStudy"])
      state[f] = String(data.get(f) ?? "").trim();
    state.StudyDate = dateRange(String(data.get("from") ?? ""), String(data.get("to") ?? ""));
    const replace = (typing && this.editing) || location.search === searchToUrl(state);
    this.editing = typing;
    navigate(`./${searchToUrl(state)}`, { replace });
  }

  sortBy(key) {
    const current = this.state.sort;
    const sort = current === key ? `-${key}` : current === `-${key}` ? key : key === "StudyDate" ? `-${key}` : key;
    navigate(`./${searchToUrl({ ...this.state, sort, page: 1 })}`);
  }

  fillForm(state) {
    const f = this.form.elements;
    for (const k of ["PatientName", "PatientID", "AccessionNumber", "ModalitiesInStudy"]) {
      if (document.activeElement !== f[k]) f[k].value = state[k];
    }
    const [from, to] = splitDateRange(state.StudyDate);
    f.from.value = from;
    f.to.value = to;
  }

  async load() {
    const params = qidoParams(this.state);
    const key = params.toString();
    if (this.cache.key !== key) {
      this.controller?.abort();
      const controller = new AbortController();
      this.controller = controller;
      this.setStatus("Searching…");
      this.root.setAttribute("aria-busy", "true");
      try {
        const { results, warning } = await this.api.searchStudies(params, controller.signal);
        if (controller.signal.aborted) return;
        this.cache = {
          key,
          rows: results.slice(0, FETCH_LIMIT).map(studyRow),
          truncated: results.length > FETCH_LIMIT || Boolean(warning),
        };
      } catch (err) {
        if (err.name === "AbortError") return;
        this.cache = { key: null, rows: [], truncated: false };
        this.render();
        this.setStatus(`Search failed: ${err.message}`, true);
        return;
      } finally {
        if (this.controller === controller) this.root.removeAttribute("aria-busy");
      }
    }
    this.render();
  }

  render() {
    const sorted = sortRows(this.cache.rows, this.state.sort);
    const { rows, page, pages } = pageOf(sorted, this.state.page);
    this.body.replaceChildren(...rows.map((r) => this.row(r)));
    for (const th of $$("th[data-sort]", this.root)) {
      const s = this.state.sort;
      th.setAttribute(
        "aria-sort",
        s === th.dataset.sort ? "ascending" : s === `-${th.dataset.sort}` ? "descending" : "none",
      );
    }
    const n = this.cache.rows.length;
    let text = n === 0 ? "No studies match." : `${n} ${n === 1 ? "study" : "studies"}`;
    if (this.cache.truncated) text = `Showing the first ${n} matching studies; narrow the search to see others.`;
    this.setStatus(text);
    this.pager(page, pages);
  }

  row(r) {
    const link = h(
      "a",
      { href: `?study=${encodeURIComponent(r.studyUid)}`, "data-link": true },
      personName(r.PatientName) || "(no name)",
    );
    return h(
      "tr",
      { "data-study": r.studyUid },
      h("td", { "data-label": "Patient" }, link),
      h("td", { "data-label": "ID" }, r.PatientID),
      h("td", { "data-label": "Date" }, formatDate(r.StudyDate)),
      h("td", { "data-label": "Description" }, r.StudyDescription),
      h("td", { "data-label": "Accession" }, r.AccessionNumber),
      h("td", { "data-label": "Modalities" }, r.ModalitiesInStudy),
      h("td", { class: "num", "data-label": "Series" }, r.NumberOfStudyRelatedSeries),
      h("td", { class: "num", "data-label": "Images" }, r.NumberOfStudyRelatedInstances),
    );
  }

  pager(page, pages) {
    const nav = $("#pager", this.root);
    nav.hidden = pages <= 1;
    $("#page-label", nav).textContent = `Page ${page} of ${pages}`;
    const link = (rel, target) => {
      const a = $(`a[rel=${rel}]`, nav);
      const ok = target >= 1 && target <= pages;
      a.href = `./${searchToUrl({ ...this.state, page: ok ? target : page })}`;
      a.setAttribute("aria-disabled", String(!ok));
      if (ok) a.removeAttribute("tabindex");
      else a.setAttribute("tabindex", "-1");
    };
    link("prev", page - 1);
    link("next", page + 1);
  }

  setStatus(text, error = false) {
    this.status.textContent = text;
    this.status.classList.toggle("error", error);
  }
}
