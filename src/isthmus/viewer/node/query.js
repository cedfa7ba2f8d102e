// C-FIND at every level with the form's keys, and C-MOVE / C-GET of a result into this browser.

import {
  COMMAND,
  commonStorageClasses,
  echo,
  find,
  get,
  move,
  proposalsFor,
  STORABLE_TRANSFER_SYNTAXES,
  storeHandler,
} from "../dicomnet/index.js";
import { h } from "../js/dom.js";
import { saveInstance } from "./instances.js";
import { say, session, withAssociation } from "./session.js";

/** Return keys asked for at each level (PS3.4 C.6.1.1 / C.6.2.1), shown as columns. */
const RETURN_KEYS = {
  PATIENT: ["PatientName", "PatientID", "PatientBirthDate", "PatientSex", "NumberOfPatientRelatedStudies"],
  STUDY: [
    "PatientName",
    "PatientID",
    "StudyDate",
    "StudyDescription",
    "AccessionNumber",
    "ModalitiesInStudy",
    "NumberOfStudyRelatedSeries",
    "NumberOfStudyRelatedInstances",
    "StudyInstanceUID",
  ],
  SERIES: [
    "StudyInstanceUID",
    "SeriesNumber",
    "Modality",
    "SeriesDescription",
    "NumberOfSeriesRelatedInstances",
    "SeriesInstanceUID",
  ],
  IMAGE: ["StudyInstanceUID", "SeriesInstanceUID", "InstanceNumber", "SOPClassUID", "SOPInstanceUID"],
};
/** Which form fields are matching keys at each level (others would not be valid keys there). */
const MATCHING = {
  PATIENT: ["PatientName", "PatientID"],
  STUDY: ["PatientName", "PatientID", "StudyDate", "AccessionNumber", "StudyInstanceUID"],
  SERIES: ["StudyInstanceUID", "SeriesInstanceUID", "Modality"],
  IMAGE: ["StudyInstanceUID", "SeriesInstanceUID"],
};
const UNIQUE = {
  PATIENT: "PatientID",
  STUDY: "StudyInstanceUID",
  SERIES: "SeriesInstanceUID",
  IMAGE: "SOPInstanceUID",
};

/** The C-FIND identifier for a level from the form's values. */
export function identifier(level, form) {
  const keys = { QueryRetrieveLevel: level };
  for (const keyword of RETURN_KEYS[level]) keys[keyword] = "";
  for (const keyword of MATCHING[level]) {
    const value = (form.get(keyword) || "").trim();
    if (value) keys[keyword] = value;
  }
  if (level === "STUDY" && form.get("Modality")) keys.ModalitiesInStudy = form.get("Modality").trim();
  if (level === "SERIES" && !keys.StudyInstanceUID)
    throw new Error("a series query needs a Study UID (study root, PS3.4 C.6.2.1)");
  if (level === "IMAGE" && (!keys.StudyInstanceUID || !keys.SeriesInstanceUID))
    throw new Error("an image query needs Study and Series UIDs");
  return keys;
}

export async function echoPeer(peer) {
  say("peer-status", `C-ECHO to ${peer}…`);
  try {
    const status = await withAssociation(peer, proposalsFor({ echo: true }), echo);
    say("peer-status", `C-ECHO to ${peer}: success (status 0x${status.toString(16).padStart(4, "0")}).`);
  } catch (error) {
    say("peer-status", `C-ECHO to ${peer} failed: ${error.message}`, true);
  }
}

export async function findOnPeer(peer, formElement) {
  const form = new FormData(formElement);
  const level = form.get("level");
  let keys;
  try {
    keys = identifier(level, form);
  } catch (error) {
    say("query-status", error.message, true);
    return;
  }
  const root = level === "PATIENT" ? "PATIENT" : "STUDY";
  const table = document.getElementById("results");
  const columns = RETURN_KEYS[level];
  table.tHead.replaceChildren(
    h(
      "tr",
      {},
      columns.map((c) => h("th", { scope: "col" }, c)),
      h("th", { scope: "col" }, ""),
    ),
  );
  table.tBodies[0].replaceChildren();
  say("query-status", `C-FIND ${level} on ${peer}…`);
  try {
    const matches = await withAssociation(peer, proposalsFor({ find: root }), (service) =>
      find(service, {
        root,
        keys,
        onMatch: (match) => table.tBodies[0].append(resultRow(peer, level, columns, match)),
      }),
    );
    say(
      "query-status",
      `${matches.length} ${level.toLowerCase()} match${matches.length === 1 ? "" : "es"} on ${peer}.`,
    );
  } catch (error) {
    say("query-status", `C-FIND on ${peer} failed: ${error.message}`, true);
  }
}

function resultRow(peer, level, columns, match) {
  const cells = columns.map((c) =>
    h(
      "td",
      {},
      []
        .concat(match[c] ?? "")
        .join("\\")
        .replace(/\^/g, " "),
    ),
  );
  const actions = h("td", {});
  if (level !== "PATIENT") {
    const keys = { QueryRetrieveLevel: level };
    for (const k of ["StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"]) if (match[k]) keys[k] = match[k];
    keys[UNIQUE[level]] = match[UNIQUE[level]];
    actions.append(
      h("button", { type: "button", onclick: (e) => moveHere(peer, keys, e.target) }, "Move here"),
      " ",
      h("button", { type: "button", onclick: (e) => getHere(peer, keys, e.target) }, "Get"),
    );
  }
  return h("tr", {}, cells, actions);
}

function progressText(verb, p) {
  const total = (p.remaining ?? 0) + p.completed + p.failed + p.warning;
  return `${verb}: ${p.completed}${total ? ` of ${total}` : ""} done${p.failed ? `, ${p.failed} failed` : ""}${p.remaining ? `, ${p.remaining} to go` : ""}`;
}

/** C-MOVE to this browser's registered AE title; the peer then C-STOREs to it. */
async function moveHere(peer, keys, button) {
  if (!session.aet) {
    say("query-status", "Register an AE title first: a C-MOVE sends to a registered AE.", true);
    return;
  }
  button.disabled = true;
  try {
    const result = await withAssociation(peer, proposalsFor({ move: "STUDY" }), (service) =>
      move(service, {
        keys,
        destination: session.aet,
        onProgress: (p) => say("query-status", progressText(`C-MOVE to ${session.aet}`, p)),
      }),
    );
    say("query-status", `${progressText(`C-MOVE to ${session.aet}`, result)}.`, result.failed > 0);
  } catch (error) {
    say("query-status", `C-MOVE from ${peer} failed: ${error.message}`, true);
  } finally {
    button.disabled = false;
  }
}

/** C-GET: instances come back on the same association; no AE title needs registering. */
async function getHere(peer, keys, button) {
  button.disabled = true;
  const storage = commonStorageClasses(100).map((sopClass) => ({
    sopClass,
    transferSyntaxes: STORABLE_TRANSFER_SYNTAXES,
  }));
  try {
    const result = await withAssociation(
      peer,
      proposalsFor({ get: "STUDY", storage, storageRoles: true }),
      (service) => get(service, { keys, onProgress: (p) => say("query-status", progressText("C-GET", p)) }),
      { [COMMAND.C_STORE_RQ]: storeHandler(saveInstance) },
    );
    say("query-status", `${progressText("C-GET", result)}.`, result.failed > 0);
  } catch (error) {
    say("query-status", `C-GET from ${peer} failed: ${error.message}`, true);
  } finally {
    button.disabled = false;
  }
}
