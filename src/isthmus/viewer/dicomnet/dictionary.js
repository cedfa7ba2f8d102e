/**
 * The data elements this library reads or writes by name (PS3.6): query keys for
 * every Query/Retrieve level (PS3.4 C.6.1.1, C.6.2.1), the header fields shown for a
 * received instance, and the image pixel module for rendering. Other elements are
 * carried as bytes with the VR the encoding gives them.
 */

/** keyword → [tag, VR] */
const ENTRIES = {
  // File meta information (PS3.10 7.1)
  FileMetaInformationGroupLength: [0x00020000, "UL"],
  FileMetaInformationVersion: [0x00020001, "OB"],
  MediaStorageSOPClassUID: [0x00020002, "UI"],
  MediaStorageSOPInstanceUID: [0x00020003, "UI"],
  TransferSyntaxUID: [0x00020010, "UI"],
  ImplementationClassUID: [0x00020012, "UI"],
  ImplementationVersionName: [0x00020013, "SH"],
  SourceApplicationEntityTitle: [0x00020016, "AE"],
  // SOP common, general study/series/equipment
  SpecificCharacterSet: [0x00080005, "CS"],
  ImageType: [0x00080008, "CS"],
  InstanceCreationDate: [0x00080012, "DA"],
  InstanceCreationTime: [0x00080013, "TM"],
  SOPClassUID: [0x00080016, "UI"],
  SOPInstanceUID: [0x00080018, "UI"],
  StudyDate: [0x00080020, "DA"],
  SeriesDate: [0x00080021, "DA"],
  ContentDate: [0x00080023, "DA"],
  StudyTime: [0x00080030, "TM"],
  SeriesTime: [0x00080031, "TM"],
  ContentTime: [0x00080033, "TM"],
  AccessionNumber: [0x00080050, "SH"],
  QueryRetrieveLevel: [0x00080052, "CS"],
  RetrieveAETitle: [0x00080054, "AE"],
  InstanceAvailability: [0x00080056, "CS"],
  FailedSOPInstanceUIDList: [0x00080058, "UI"],
  Modality: [0x00080060, "CS"],
  ModalitiesInStudy: [0x00080061, "CS"],
  SOPClassesInStudy: [0x00080062, "UI"],
  Manufacturer: [0x00080070, "LO"],
  InstitutionName: [0x00080080, "LO"],
  ReferringPhysicianName: [0x00080090, "PN"],
  TimezoneOffsetFromUTC: [0x00080201, "SH"],
  StationName: [0x00081010, "SH"],
  StudyDescription: [0x00081030, "LO"],
  SeriesDescription: [0x0008103e, "LO"],
  // Patient
  PatientName: [0x00100010, "PN"],
  PatientID: [0x00100020, "LO"],
  IssuerOfPatientID: [0x00100021, "LO"],
  PatientBirthDate: [0x00100030, "DA"],
  PatientSex: [0x00100040, "CS"],
  PatientAge: [0x00101010, "AS"],
  PatientSize: [0x00101020, "DS"],
  PatientWeight: [0x00101030, "DS"],
  PatientComments: [0x00104000, "LT"],
  BodyPartExamined: [0x00180015, "CS"],
  SliceThickness: [0x00180050, "DS"],
  // Relationship
  StudyInstanceUID: [0x0020000d, "UI"],
  SeriesInstanceUID: [0x0020000e, "UI"],
  StudyID: [0x00200010, "SH"],
  SeriesNumber: [0x00200011, "IS"],
  AcquisitionNumber: [0x00200012, "IS"],
  InstanceNumber: [0x00200013, "IS"],
  ImagePositionPatient: [0x00200032, "DS"],
  ImageOrientationPatient: [0x00200037, "DS"],
  FrameOfReferenceUID: [0x00200052, "UI"],
  NumberOfPatientRelatedStudies: [0x00201200, "IS"],
  NumberOfPatientRelatedSeries: [0x00201202, "IS"],
  NumberOfPatientRelatedInstances: [0x00201204, "IS"],
  NumberOfStudyRelatedSeries: [0x00201206, "IS"],
  NumberOfStudyRelatedInstances: [0x00201208, "IS"],
  NumberOfSeriesRelatedInstances: [0x00201209, "IS"],
  // Image pixel (PS3.3 C.7.6.3) and VOI LUT / modality LUT
  SamplesPerPixel: [0x00280002, "US"],
  PhotometricInterpretation: [0x00280004, "CS"],
  PlanarConfiguration: [0x00280006, "US"],
  NumberOfFrames: [0x00280008, "IS"],
  Rows: [0x00280010, "US"],
  Columns: [0x00280011, "US"],
  PixelSpacing: [0x00280030, "DS"],
  BitsAllocated: [0x00280100, "US"],
  BitsStored: [0x00280101, "US"],
  HighBit: [0x00280102, "US"],
  PixelRepresentation: [0x00280103, "US"],
  WindowCenter: [0x00281050, "DS"],
  WindowWidth: [0x00281051, "DS"],
  WindowCenterWidthExplanation: [0x00281055, "LO"],
  VOILUTFunction: [0x00281056, "CS"],
  ImagerPixelSpacing: [0x00181164, "DS"],
  PresentationLUTShape: [0x20500020, "CS"],
  RescaleIntercept: [0x00281052, "DS"],
  RescaleSlope: [0x00281053, "DS"],
  PixelData: [0x7fe00010, "OW"],
};

export const TAGS = Object.freeze(Object.fromEntries(Object.entries(ENTRIES).map(([k, [t]]) => [k, t])));

const byTag = new Map(Object.entries(ENTRIES).map(([k, [t, vr]]) => [t, { keyword: k, vr }]));

/** [tag, VR] of a keyword; throws for a keyword this dictionary does not have. */
export function lookup(keyword) {
  const entry = ENTRIES[keyword];
  if (!entry) throw new RangeError(`unknown attribute keyword ${JSON.stringify(keyword)}`);
  return entry;
}

/** Keyword and VR of a tag, or null when unknown. */
export function describeTag(tag) {
  return byTag.get(tag) || null;
}

/** The VR of a tag for Implicit VR decoding; group lengths are UL, unknown tags UN. */
export function vrOf(tag) {
  const entry = byTag.get(tag);
  if (entry) return entry.vr;
  if ((tag & 0xffff) === 0) return "UL";
  return "UN";
}

export function tagString(tag) {
  const hex = tag.toString(16).toUpperCase().padStart(8, "0");
  return `(${hex.slice(0, 4)},${hex.slice(4)})`;
}
