// The File Meta Information of a DICOM Part 10 file (PS3.10 7.1): preamble, "DICM", group 0002
// in Explicit VR Little Endian. Enough to name a file's instance before uploading it.

const LONG_VRS = new Set(["OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"]);

/**
 * Read the file meta elements of Part 10 bytes.
 * @returns {null | {transferSyntax: string, sopClass: string, sopInstance: string}} null when
 * the bytes are not a Part 10 file.
 */
export function readFileMeta(bytes) {
  if (bytes.length < 132 || String.fromCharCode(...bytes.subarray(128, 132)) !== "DICM") return null;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const found = {};
  let pos = 132;
  while (pos + 8 <= bytes.length) {
    const group = view.getUint16(pos, true);
    if (group !== 0x0002) break;
    const element = view.getUint16(pos + 2, true);
    const vr = String.fromCharCode(bytes[pos + 4], bytes[pos + 5]);
    let length;
    let start;
    if (LONG_VRS.has(vr)) {
      if (pos + 12 > bytes.length) break;
      length = view.getUint32(pos + 8, true);
      start = pos + 12;
    } else {
      length = view.getUint16(pos + 6, true);
      start = pos + 8;
    }
    if (start + length > bytes.length) break;
    if (element === 0x0002 || element === 0x0003 || element === 0x0010) {
      found[element] = uidText(bytes.subarray(start, start + length));
    }
    pos = start + length;
  }
  return {
    sopClass: found[0x0002] ?? "",
    sopInstance: found[0x0003] ?? "",
    transferSyntax: found[0x0010] ?? "",
  };
}

function uidText(bytes) {
  let s = "";
  for (const b of bytes) if (b !== 0) s += String.fromCharCode(b);
  return s.trim();
}
