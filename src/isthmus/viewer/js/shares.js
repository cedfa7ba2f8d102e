// Share links from the study view (docs/p2p.md): make a link for the study on screen, copy
// it, see the study's links and revoke one. The node's share API (/api/shares) needs the
// admin permission: the same token as the rest of the viewer, asked for when refused.

import { $, h } from "./dom.js";

export class SharePanel {
  /** @param {import("./api.js").DicomWeb} api  @param {HTMLDialogElement} dialog */
  constructor(api, dialog) {
    this.api = api;
    this.dialog = dialog;
    this.studyUid = null;
    $("#share-close", dialog).addEventListener("click", () => dialog.close());
    $("#share-form", dialog).addEventListener("submit", (e) => {
      e.preventDefault();
      this.create();
    });
    $("#share-copy", dialog).addEventListener("click", () => this.copy());
  }

  /** Open the dialog for `studyUid` and list its links. */
  open(studyUid) {
    this.studyUid = studyUid;
    $("#share-link", this.dialog).value = "";
    $("#share-made", this.dialog).hidden = true;
    this.say("");
    if (!this.dialog.open) this.dialog.showModal();
    this.refresh();
  }

  async call(path, options = {}) {
    const url = new URL(`api/shares${path}`, document.baseURI).href; // beside the viewer
    const response = await this.api.request(url, {
      accept: "application/json",
      ...options,
    });
    return response.json();
  }

  async create() {
    const body = {
      study: this.studyUid,
      expires: $("#share-expires", this.dialog).value,
      federation: $("#share-federation", this.dialog).checked,
    };
    try {
      const made = await this.call("", {
        method: "POST",
        body: JSON.stringify(body),
        headers: { "Content-Type": "application/json" },
      });
      $("#share-link", this.dialog).value = made.url;
      $("#share-made", this.dialog).hidden = false;
      this.say(`Link made; it works until ${new Date(made.expires_at).toLocaleString()}.`);
      this.refresh();
    } catch (err) {
      this.say(`Could not make a link: ${err.message}`);
    }
  }

  async copy() {
    const input = $("#share-link", this.dialog);
    try {
      await navigator.clipboard.writeText(input.value);
      this.say("Link copied. Its secret is after the #: send it only to whom it is meant for.");
    } catch {
      input.select(); // no clipboard (plain HTTP): the person copies it
    }
  }

  async refresh() {
    const list = $("#share-list tbody", this.dialog);
    try {
      const { shares } = await this.call(`?study=${encodeURIComponent(this.studyUid)}`);
      list.replaceChildren(...shares.map((s) => this.row(s)));
      $("#share-none", this.dialog).hidden = shares.length > 0;
    } catch (err) {
      this.say(`Could not list the links: ${err.message}`);
    }
  }

  row(share) {
    const revoke = h("button", { type: "button", "data-link-id": share.link_id }, "Revoke");
    revoke.disabled = share.state !== "active";
    revoke.addEventListener("click", () => this.revoke(share.link_id));
    return h(
      "tr",
      { "data-state": share.state },
      h("td", {}, new Date(share.created_at).toLocaleString()),
      h("td", {}, new Date(share.expires_at).toLocaleString()),
      h("td", {}, share.state),
      h("td", {}, revoke),
    );
  }

  async revoke(linkId) {
    try {
      await this.call(`/${encodeURIComponent(linkId)}`, { method: "DELETE" });
      this.say("Link revoked: it no longer opens, and a transfer in progress stops.");
      this.refresh();
    } catch (err) {
      this.say(`Could not revoke: ${err.message}`);
    }
  }

  say(message) {
    $("#share-status", this.dialog).textContent = message;
  }
}
