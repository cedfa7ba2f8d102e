// The study search: URL round trip, QIDO parameters, sorting and paging.

import assert from "node:assert/strict";
import { test } from "node:test";

import {
  dateRange,
  nameMatch,
  pageOf,
  qidoParams,
  searchFromUrl,
  searchToUrl,
  sortRows,
  splitDateRange,
  studyRow,
} from "../../../src/isthmus/viewer/js/query.js";

test("a search survives the trip through the URL", () => {
  const state = searchFromUrl(
    "?PatientName=SM*&StudyDate=20200101-20201231&ModalitiesInStudy=CT&sort=PatientName&page=3",
  );
  assert.equal(state.PatientName, "SM*");
  assert.equal(state.sort, "PatientName");
  assert.equal(state.page, 3);
  assert.equal(
    searchToUrl(state),
    "?PatientName=SM*&StudyDate=20200101-20201231&ModalitiesInStudy=CT&sort=PatientName&page=3".replace("SM*", "SM*"),
  );
  assert.equal(searchToUrl(searchFromUrl("")), "");
});

test("unknown sort keys and bad pages fall back to defaults", () => {
  const state = searchFromUrl("?sort=DROP TABLE&page=-4");
  assert.equal(state.sort, "-StudyDate");
  assert.equal(state.page, 1);
});

test("a name without wildcards matches as a prefix", () => {
  assert.equal(nameMatch("SMITH"), "SMITH*");
  assert.equal(nameMatch("*JOHN"), "*JOHN");
  assert.equal(nameMatch("SM?TH"), "SM?TH");
  assert.equal(nameMatch(""), "");
});

test("date ranges, open or closed, both ways", () => {
  assert.equal(dateRange("2020-01-01", "2020-12-31"), "20200101-20201231");
  assert.equal(dateRange("2020-01-01", ""), "20200101-");
  assert.equal(dateRange("", "2020-12-31"), "-20201231");
  assert.equal(dateRange("2020-01-01", "2020-01-01"), "20200101");
  assert.equal(dateRange("", ""), "");
  assert.deepEqual(splitDateRange("20200101-"), ["2020-01-01", ""]);
  assert.deepEqual(splitDateRange("20200102"), ["2020-01-02", "2020-01-02"]);
});

test("QIDO parameters carry the matching keys and what to include", () => {
  const params = qidoParams(
    { PatientName: "smith", PatientID: "", AccessionNumber: "ACC1", StudyDate: "20200101-", ModalitiesInStudy: "ct" },
    100,
  );
  assert.equal(params.get("PatientName"), "smith*");
  assert.equal(params.get("AccessionNumber"), "ACC1");
  assert.equal(params.get("StudyDate"), "20200101-");
  assert.equal(params.get("ModalitiesInStudy"), "CT");
  assert.equal(params.has("PatientID"), false);
  assert.equal(params.get("limit"), "101");
  assert.ok(params.getAll("includefield").includes("NumberOfStudyRelatedInstances"));
});

const row = (name, date, n) =>
  studyRow({
    "00100010": { vr: "PN", Value: [{ Alphabetic: name }] },
    "00080020": { vr: "DA", Value: [date] },
    "00201208": { vr: "IS", Value: [n] },
    "00080061": { vr: "CS", Value: ["CT", "SR"] },
  });

test("rows sort by any column either way", () => {
  const rows = [row("b^x", "20200101", 5), row("A^y", "20210101", 10), row("c^z", "20190101", 1)];
  assert.deepEqual(
    sortRows(rows, "PatientName").map((r) => r.PatientName),
    ["A^y", "b^x", "c^z"],
  );
  assert.deepEqual(
    sortRows(rows, "-StudyDate").map((r) => r.StudyDate),
    ["20210101", "20200101", "20190101"],
  );
  assert.deepEqual(
    sortRows(rows, "NumberOfStudyRelatedInstances").map((r) => r.NumberOfStudyRelatedInstances),
    [1, 5, 10],
  );
  assert.equal(rows[0].ModalitiesInStudy, "CT, SR");
});

test("pages are cut to size and clamped", () => {
  const rows = Array.from({ length: 60 }, (_, i) => i);
  assert.deepEqual(pageOf(rows, 3, 25), { rows: rows.slice(50), page: 3, pages: 3 });
  assert.equal(pageOf(rows, 9, 25).page, 3);
  assert.equal(pageOf([], 1, 25).pages, 1);
});
