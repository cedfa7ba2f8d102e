import assert from "node:assert/strict";
import { test } from "node:test";
import {
  encodeElements,
  encodeIdentifier,
  PIXEL_DATA,
  parseDataset,
} from "../../../src/isthmus/viewer/dicomnet/dataset.js";
import { TAGS } from "../../../src/isthmus/viewer/dicomnet/dictionary.js";
import { fileMeta, readPart10, toPart10 } from "../../../src/isthmus/viewer/dicomnet/part10.js";
import { dcmtkCapture } from "./helpers.mjs";

const file = dcmtkCapture().storeFile;

test("the header of a pydicom-written CT file parses up to pixel data", () => {
  const { transferSyntaxUID, datasetOffset, implicit } = readPart10(file);
  assert.equal(transferSyntaxUID, "1.2.840.10008.1.2.1");
  const header = parseDataset(file, { start: datasetOffset, implicit, stopAt: PIXEL_DATA });
  assert.equal(header.string(TAGS.PatientName), "DOE^JANE");
  assert.equal(header.number(TAGS.Rows), 64);
  assert.deepEqual(header.numbers(TAGS.ImageOrientationPatient), [1, 0, 0, 0, 1, 0]);
  assert.equal(header.has(PIXEL_DATA), false);
  const full = parseDataset(file, { start: datasetOffset, implicit });
  assert.equal(full.get(PIXEL_DATA).length, 64 * 64 * 2);
});

test("identifiers round trip in Explicit and Implicit VR, with C-FIND matching syntax kept", () => {
  const keys = {
    QueryRetrieveLevel: "STUDY",
    PatientName: "DOE*",
    StudyDate: "20240101-20241231",
    ModalitiesInStudy: ["CT", "MR"],
    StudyInstanceUID: "",
    NumberOfStudyRelatedInstances: "",
  };
  for (const implicit of [false, true]) {
    const bytes = encodeIdentifier(keys, { implicit });
    assert.equal(bytes.length % 2, 0);
    const back = parseDataset(bytes, { implicit }).toObject();
    assert.deepEqual(back, { ...keys, NumberOfStudyRelatedInstances: null });
  }
});

test("a non-ASCII value adds Specific Character Set ISO_IR 192 and decodes as UTF-8", () => {
  const bytes = encodeIdentifier({ QueryRetrieveLevel: "PATIENT", PatientName: "Müller^Zoë" });
  const ds = parseDataset(bytes);
  assert.equal(ds.string(TAGS.SpecificCharacterSet), "ISO_IR 192");
  assert.equal(ds.string(TAGS.PatientName), "Müller^Zoë");
});

test("sequences of undefined length and encapsulated pixel data are walked", () => {
  // (0008,1115) SQ undefined length with one undefined-length item, then encapsulated pixel data.
  const item = encodeElements([{ tag: TAGS.SeriesInstanceUID, vr: "UI", value: "1.2.3" }]);
  const parts = [
    Uint8Array.from([0x08, 0x00, 0x15, 0x11, 0x53, 0x51, 0, 0, 0xff, 0xff, 0xff, 0xff]),
    Uint8Array.from([0xfe, 0xff, 0x00, 0xe0, 0xff, 0xff, 0xff, 0xff]),
    item,
    Uint8Array.from([0xfe, 0xff, 0x0d, 0xe0, 0, 0, 0, 0]),
    Uint8Array.from([0xfe, 0xff, 0xdd, 0xe0, 0, 0, 0, 0]),
    Uint8Array.from([0xe0, 0x7f, 0x10, 0x00, 0x4f, 0x42, 0, 0, 0xff, 0xff, 0xff, 0xff]),
    Uint8Array.from([0xfe, 0xff, 0x00, 0xe0, 0, 0, 0, 0]),
    Uint8Array.from([0xfe, 0xff, 0x00, 0xe0, 4, 0, 0, 0, 1, 2, 3, 4]),
    Uint8Array.from([0xfe, 0xff, 0xdd, 0xe0, 0, 0, 0, 0]),
  ];
  const bytes = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    bytes.set(p, o);
    o += p.length;
  }
  const ds = parseDataset(bytes);
  assert.equal(ds.items(0x00081115)[0].string(TAGS.SeriesInstanceUID), "1.2.3");
  assert.deepEqual(
    ds.get(PIXEL_DATA).fragments.map((f) => f.length),
    [0, 4],
  );
  assert.equal(ds.end, bytes.length);
});

test("truncated datasets are refused, not misread", () => {
  const bytes = encodeIdentifier({ PatientID: "ABCDEF" });
  assert.throws(() => parseDataset(bytes.subarray(0, bytes.length - 2)), /runs past the end/);
  assert.throws(() => parseDataset(Uint8Array.from([0x10, 0, 0x10, 0, 0x5a, 0x5a, 0, 0])), /invalid VR/);
});

test("file meta built here is read back, and the dataset follows it unchanged", () => {
  const dataset = file.subarray(readPart10(file).datasetOffset);
  const meta = {
    sopClassUID: "1.2.840.10008.5.1.4.1.1.2",
    sopInstanceUID: "1.2.3.4",
    transferSyntaxUID: "1.2.840.10008.1.2.1",
    sourceAET: "STORESCU",
  };
  const out = toPart10(dataset, meta);
  const read = readPart10(out);
  assert.equal(read.transferSyntaxUID, meta.transferSyntaxUID);
  assert.equal(read.meta.string(TAGS.SourceApplicationEntityTitle), "STORESCU");
  assert.equal(read.meta.string(TAGS.MediaStorageSOPInstanceUID), "1.2.3.4");
  assert.deepEqual(out.subarray(read.datasetOffset), dataset);
  assert.equal(fileMeta(meta).length, read.datasetOffset);
});
