// A series as a stack of frames to scroll through: instances in Instance Number order
// (then along the slice normal, then by UID), each multi-frame instance contributing all frames.

import { num, nums, TAG, text } from "./dicomjson.js";

/** Position along the slice normal (PS3.3 C.7.6.2.1.1), or null. */
export function slicePosition(meta) {
  const ipp = nums(meta, TAG.ImagePositionPatient);
  const iop = nums(meta, TAG.ImageOrientationPatient);
  if (ipp.length < 3 || iop.length < 6) return null;
  const n = [iop[1] * iop[5] - iop[2] * iop[4], iop[2] * iop[3] - iop[0] * iop[5], iop[0] * iop[4] - iop[1] * iop[3]];
  return n[0] * ipp[0] + n[1] * ipp[1] + n[2] * ipp[2];
}

/**
 * Frames of a series, in reading order.
 * @param {object[]} metadata DICOM JSON of every instance of the series
 * @returns {{sopUid: string, frame: number, frames: number, instanceNumber: number|null, meta: object}[]}
 */
export function buildStack(metadata) {
  const instances = metadata.map((meta) => ({
    meta,
    sopUid: text(meta, TAG.SOPInstanceUID),
    instanceNumber: num(meta, TAG.InstanceNumber, null),
    position: slicePosition(meta),
    frames: Math.max(1, num(meta, TAG.NumberOfFrames, 1)),
  }));
  instances.sort(
    (a, b) =>
      order(a.instanceNumber, b.instanceNumber) ||
      order(a.position, b.position) ||
      (a.sopUid < b.sopUid ? -1 : a.sopUid > b.sopUid ? 1 : 0),
  );
  const stack = [];
  for (const inst of instances) {
    for (let f = 1; f <= inst.frames; f++) {
      stack.push({
        sopUid: inst.sopUid,
        frame: f,
        frames: inst.frames,
        instanceNumber: inst.instanceNumber,
        meta: inst.meta,
      });
    }
  }
  return stack;
}

function order(a, b) {
  if (a === null && b === null) return 0;
  if (a === null) return 1;
  if (b === null) return -1;
  return a - b;
}

/** Stack indexes in the order to fetch them: the current one, then outward (ahead first). */
export function prefetchOrder(length, current) {
  const out = [];
  if (length <= 0) return out;
  const start = Math.min(Math.max(0, current), length - 1);
  out.push(start);
  for (let d = 1; out.length < length; d++) {
    if (start + d < length) out.push(start + d);
    if (start - d >= 0) out.push(start - d);
  }
  return out;
}
