// Download a study as a ZIP of its DICOM files, built in the browser: WADO-RS retrieves the
// study as stored (PS3.18 10.4.1.1.1, one streamed multipart response) and each instance is
// written into the ZIP as it arrives — to a file chosen by the person where the browser can
// (File System Access), otherwise into a Blob.

import { num, TAG, text } from "./dicomjson.js";
import { formatBytes } from "./dom.js";
import { safeName, ZipWriter } from "./zip.js";

const STREAM_TO_FILE_ABOVE = 512 * 1024 * 1024;

/**
 * @param {object} api DicomWeb
 * @param {object[]} metadata the study's instances (DICOM JSON), for folder and file names
 * @param {(text: string) => void} report progress text
 */
export async function downloadStudy(api, studyUid, metadata, report, signal) {
  // The Part 10 reader (and the data dictionary it brings) loads when the first download starts.
  const { readFileMeta } = await import("../dicomnet/part10.js");
  const names = new Map();
  let estimate = 0;
  for (const m of metadata) {
    const series = `S${String(num(m, TAG.SeriesNumber, 0)).padStart(3, "0")}_${safeName(text(m, TAG.Modality), "OT")}_${safeName(text(m, TAG.SeriesDescription), "series")}`;
    const instance = num(m, TAG.InstanceNumber, null);
    const file = instance === null ? safeName(text(m, TAG.SOPInstanceUID)) : `IMG${String(instance).padStart(5, "0")}`;
    names.set(text(m, TAG.SOPInstanceUID), `${series}/${file}.dcm`);
    estimate += num(m, TAG.Rows, 0) * num(m, TAG.Columns, 0) * 2 * num(m, TAG.NumberOfFrames, 1);
  }
  const first = metadata[0] ?? {};
  const zipName = `${[safeName(text(first, TAG.PatientID), "patient"), text(first, TAG.StudyDate), safeName(text(first, TAG.AccessionNumber), "")].filter(Boolean).join("_")}.zip`;
  const folder = safeName(zipName.replace(/\.zip$/, ""));

  const sink = await openSink(zipName, estimate);
  const zip = new ZipWriter((chunk) => sink.write(chunk));
  let count = 0;
  let bytes = 0;
  try {
    await api.retrieveStudy(
      studyUid,
      async (part10) => {
        const sop = readFileMeta(part10)?.sopInstance ?? "";
        await zip.add(`${folder}/${names.get(sop) ?? `other/${safeName(sop, `instance${count + 1}`)}.dcm`}`, part10);
        count++;
        bytes += part10.length;
        report(`Downloading: ${count} of ${metadata.length} files, ${formatBytes(bytes)}`);
      },
      signal,
    );
    await zip.finish();
    await sink.close();
    report(`Downloaded ${count} files (${formatBytes(bytes)}) as ${zipName}`);
  } catch (err) {
    await sink.abort?.();
    throw err;
  }
}

/** Where the ZIP goes: a file stream for big studies when the browser offers one, else a Blob. */
export async function openSink(name, estimate) {
  if (estimate > STREAM_TO_FILE_ABOVE && typeof window.showSaveFilePicker === "function") {
    try {
      const handle = await window.showSaveFilePicker({
        suggestedName: name,
        types: [{ description: "ZIP", accept: { "application/zip": [".zip"] } }],
      });
      const stream = await handle.createWritable();
      return { write: (c) => stream.write(c), close: () => stream.close(), abort: () => stream.abort() };
    } catch (err) {
      if (err.name === "AbortError") throw err;
    }
  }
  const chunks = [];
  return {
    write: (c) => {
      chunks.push(c);
    },
    close: () => {
      const url = URL.createObjectURL(new Blob(chunks, { type: "application/zip" }));
      const a = Object.assign(document.createElement("a"), { href: url, download: name });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 60_000);
    },
  };
}
