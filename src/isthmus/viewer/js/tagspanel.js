// The tags panel: the current instance's attributes from WADO-RS /metadata (DICOM JSON,
// PS3.18 F.2), nested sequences indented, filtered by a search over tag, keyword and value.

import { h } from "./dom.js";

let keywordOf = null;

export class TagsPanel {
  constructor(panel, onClose) {
    this.panel = panel;
    this.body = panel.querySelector("tbody");
    this.search = panel.querySelector("input[type=search]");
    this.meta = null;
    this.search.addEventListener("input", () => this.filter());
    panel.querySelector("#tags-close").addEventListener("click", onClose);
    panel.addEventListener("keydown", (e) => {
      if (e.key === "Escape") {
        e.stopPropagation();
        onClose();
      }
    });
  }

  get open() {
    return !this.panel.hidden;
  }

  async show(meta) {
    if (!keywordOf) keywordOf = (await import("../dicomnet/dictionary.js")).keyword;
    if (meta === this.meta && this.body.childElementCount) return;
    this.meta = meta;
    const rows = [];
    if (meta) walk(meta, 0, rows, []);
    this.body.replaceChildren(...rows);
    this.filter();
  }

  filter() {
    const q = this.search.value.trim().toLowerCase();
    const terms = q.replace(/[(),]/g, "");
    for (const row of this.body.rows) {
      row.hidden = Boolean(q) && !row.dataset.search.includes(terms) && !row.dataset.search.includes(q);
    }
    if (q) {
      // Keep the sequences that hold a match visible, so a nested match shows where it is.
      for (const row of this.body.rows) {
        if (row.hidden) continue;
        for (const parent of (row.dataset.parents || "").split(" ").filter(Boolean)) {
          const p = this.body.querySelector(`tr[data-id="${parent}"]`);
          if (p) p.hidden = false;
        }
      }
    }
  }
}

let counter = 0;

function walk(dataset, depth, rows, parents) {
  for (const tag of Object.keys(dataset).sort()) {
    const element = dataset[tag] ?? {};
    const name = keywordOf(tag);
    const id = `t${++counter}`;
    const label = `(${tag.slice(0, 4)},${tag.slice(4)})`;
    const val = display(element);
    const row = h(
      "tr",
      {
        "data-id": id,
        "data-parents": parents.join(" "),
        class: element.vr === "SQ" ? "seq" : false,
        "data-search": `${`${tag} ${label} ${name} ${val}`.toLowerCase().replace(/[(),]/g, " ")} ${label.toLowerCase()}`,
      },
      h("td", { style: depth ? `padding-left:${6 + depth * 14}px` : false }, label),
      h("td", {}, name),
      h("td", {}, element.vr ?? ""),
      h("td", {}, val),
    );
    rows.push(row);
    if (element.vr === "SQ" && Array.isArray(element.Value)) {
      element.Value.forEach((item, i) => {
        const itemId = `t${++counter}`;
        rows.push(
          h(
            "tr",
            {
              "data-id": itemId,
              "data-parents": [...parents, id].join(" "),
              class: "seq",
              "data-search": `item ${i + 1}`,
            },
            h("td", { style: `padding-left:${6 + (depth + 1) * 14}px` }, `Item ${i + 1}`),
            h("td"),
            h("td"),
            h("td"),
          ),
        );
        walk(item ?? {}, depth + 2, rows, [...parents, id, itemId]);
      });
    }
  }
}

/** A readable value: person names by group, binary as its size, long lists shortened. */
function display(element) {
  if (element.BulkDataURI) return "(bulk data)";
  if (element.InlineBinary) return `(binary, ${Math.floor((element.InlineBinary.length * 3) / 4)} bytes)`;
  if (element.vr === "SQ") return `${element.Value?.length ?? 0} item(s)`;
  const values = element.Value ?? [];
  const parts = values
    .slice(0, 64)
    .map((v) => (v && typeof v === "object" ? (v.Alphabetic ?? v.Ideographic ?? v.Phonetic ?? "") : String(v)));
  return parts.join("\\") + (values.length > 64 ? ` … (${values.length} values)` : "");
}
