// Reading the DICOM JSON model (PS3.18 Annex F): values by tag, person names, dates.
// Pure functions: imported by the browser and by Node's tests alike.

/** Tags used by the viewer, as the 8-hex-digit keys of DICOM JSON. */
export const TAG = Object.freeze({
  SpecificCharacterSet: "00080005",
  SOPClassUID: "00080016",
  SOPInstanceUID: "00080018",
  StudyDate: "00080020",
  StudyTime: "00080030",
  AccessionNumber: "00080050",
  Modality: "00080060",
  ModalitiesInStudy: "00080061",
  InstitutionName: "00080080",
  StudyDescription: "00081030",
  SeriesDescription: "0008103E",
  PatientName: "00100010",
  PatientID: "00100020",
  PatientBirthDate: "00100030",
  PatientSex: "00100040",
  SliceThickness: "00180050",
  StudyInstanceUID: "0020000D",
  SeriesInstanceUID: "0020000E",
  StudyID: "00200010",
  SeriesNumber: "00200011",
  InstanceNumber: "00200013",
  ImagePositionPatient: "00200032",
  ImageOrientationPatient: "00200037",
  SliceLocation: "00201041",
  NumberOfStudyRelatedSeries: "00201206",
  NumberOfStudyRelatedInstances: "00201208",
  NumberOfSeriesRelatedInstances: "00201209",
  SamplesPerPixel: "00280002",
  PhotometricInterpretation: "00280004",
  PlanarConfiguration: "00280006",
  NumberOfFrames: "00280008",
  Rows: "00280010",
  Columns: "00280011",
  PixelSpacing: "00280030",
  ImagerPixelSpacing: "00181164",
  BitsAllocated: "00280100",
  BitsStored: "00280101",
  HighBit: "00280102",
  PixelRepresentation: "00280103",
  WindowCenter: "00281050",
  WindowWidth: "00281051",
  RescaleIntercept: "00281052",
  RescaleSlope: "00281053",
  WindowCenterWidthExplanation: "00281055",
  VOILUTFunction: "00281056",
  ModalityLUTSequence: "00283000",
  VOILUTSequence: "00283010",
  LUTDescriptor: "00283002",
  LUTExplanation: "00283003",
  LUTData: "00283006",
  PresentationLUTShape: "20500020",
  FrameTime: "00181063",
  RecommendedDisplayFrameRate: "00082144",
  CineRate: "00180040",
  TransferSyntaxUID: "00020010",
  AvailableTransferSyntaxUID: "00083002",
  ReferencedSOPSequence: "00081199",
  FailedSOPSequence: "00081198",
  ReferencedSOPInstanceUID: "00081155",
  FailureReason: "00081197",
  WarningReason: "00081196",
  RetrieveURL: "00081190",
  PixelData: "7FE00010",
});

/** Every value of an element (an array, possibly empty). */
export function values(meta, tag) {
  const element = meta?.[tag];
  return element && Array.isArray(element.Value) ? element.Value : [];
}

/** The i-th value of an element, or `fallback` when absent. */
export function value(meta, tag, i = 0, fallback = undefined) {
  const all = values(meta, tag);
  return i < all.length && all[i] !== null ? all[i] : fallback;
}

/** A number (DS, IS, US... arrive as numbers or numeric strings), or `fallback`. */
export function num(meta, tag, fallback = undefined, i = 0) {
  const v = value(meta, tag, i);
  if (v === undefined || v === "") return fallback;
  const n = typeof v === "number" ? v : Number(String(v).trim());
  return Number.isFinite(n) ? n : fallback;
}

/** Every value as numbers (multi-valued DS such as Window Center). */
export function nums(meta, tag) {
  return values(meta, tag)
    .map((v) => (typeof v === "number" ? v : Number(String(v).trim())))
    .filter((n) => Number.isFinite(n));
}

/** A value as text; person names (PS3.18 F.2.2) give their Alphabetic group. */
export function text(meta, tag, fallback = "") {
  const all = values(meta, tag);
  if (!all.length) return fallback;
  return all.map((v) => (v && typeof v === "object" ? (v.Alphabetic ?? v.Ideographic ?? "") : String(v))).join("\\");
}

/** "DOE^JANE^^DR" → "DOE, JANE": family, given and middle names for display (PS3.5 6.2 PN). */
export function personName(raw) {
  if (!raw) return "";
  const [family = "", given = "", middle = "", prefix = "", suffix = ""] = String(raw).split("^");
  const first = [prefix, given, middle].filter(Boolean).join(" ");
  const name = [family, first].filter(Boolean).join(", ");
  return suffix ? `${name} ${suffix}` : name;
}

/** "20240115" → "2024-01-15" (DA, PS3.5 6.2); anything else is returned unchanged. */
export function formatDate(da) {
  const s = String(da ?? "");
  return /^\d{8}$/.test(s) ? `${s.slice(0, 4)}-${s.slice(4, 6)}-${s.slice(6, 8)}` : s;
}

/** "2024-01-15" (an <input type=date> value) → "20240115". */
export function toDicomDate(iso) {
  return String(iso ?? "").replaceAll("-", "");
}

/** "101500.123" → "10:15:00" (TM). */
export function formatTime(tm) {
  const s = String(tm ?? "");
  const m = /^(\d{2})(\d{2})?(\d{2})?/.exec(s);
  if (!m) return s;
  return [m[1], m[2], m[3]].filter(Boolean).join(":");
}

/** Items of a sequence element (an array of datasets). */
export function items(meta, tag) {
  return values(meta, tag).filter((v) => v && typeof v === "object");
}
