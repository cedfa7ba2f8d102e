// The viewer's entry point: service root, routing between the study list, a study and the
// worklist, the header's upload and sign-out buttons. URLs: "./?PatientName=…" (list),
// "./?study=UID", "./?view=worklist&date=…".

import { DicomWeb } from "./api.js";
import { getToken, setToken } from "./auth.js";
import { $, navigate } from "./dom.js";
import { SharePanel } from "./shares.js";
import { StudyList } from "./studylist.js";
import { StudyView } from "./studyview.js";
import { Uploader } from "./upload.js";
import { WorklistView } from "./worklist.js";

const rootMeta = document.querySelector('meta[name="dicomweb-root"]')?.content || "dicom-web";
const api = new DicomWeb(new URL(rootMeta, document.baseURI).pathname);
const list = new StudyList(api, $("#list-view"));
const study = new StudyView(api, $("#study-view"));
const uploader = new Uploader(api, $("#upload-dialog"));
const shares = new SharePanel(api, $("#share-dialog"));
$("#share-study").addEventListener("click", () => shares.open(study.studyUid));
const worklist = new WorklistView(api, $("#worklist-view"));

function route() {
  const params = new URLSearchParams(location.search);
  const uid = params.get("study");
  if (params.get("view") === "worklist") {
    list.hide();
    study.hide();
    worklist.show(location.search);
  } else if (uid) {
    list.hide();
    worklist.hide();
    study.show(uid, params.get("series"));
  } else {
    study.hide();
    worklist.hide();
    list.show(location.search);
  }
}

// Links marked data-link stay inside the app (ctrl/middle click still opens a new tab).
document.addEventListener("click", (event) => {
  const link = event.target.closest("a[data-link]");
  if (!link || event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey) return;
  event.preventDefault();
  navigate(link.href);
});
window.addEventListener("popstate", route);
window.addEventListener("isthmus:navigate", route);

const signOut = $("#sign-out");
const showSignOut = () => {
  signOut.hidden = !getToken();
};
document.addEventListener("isthmus:token", showSignOut);
signOut.addEventListener("click", () => {
  setToken("");
  location.reload();
});
showSignOut();

$("#upload-open").addEventListener("click", () => uploader.open());
document.addEventListener("isthmus:uploaded", () => {
  if (!$("#list-view").hidden) list.refresh();
});

route();
