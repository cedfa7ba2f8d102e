// The admin page: jobs (cancel, retry), the federation (when the node is a relay site),
// peers, routes, associations, storage, audit events and settings, from /api/admin/...
// (web/admin.py) and /api/audit, with the Bearer token of auth.js.  Refreshes itself
// every few seconds while visible.

import { askToken, getToken } from "../js/auth.js";
import { $, h, toast } from "../js/dom.js";

const REFRESH_MS = 5000;

class HttpError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** fetch() JSON with the token; a 401 asks for a token and tries again. */
async function api(path, { method = "GET" } = {}) {
  for (let attempt = 0; ; attempt++) {
    const headers = { Accept: "application/json" };
    const token = getToken();
    if (token) headers.Authorization = `Bearer ${token}`;
    const response = await fetch(path, { method, headers });
    if (response.status === 401 && attempt < 3) {
      const entered = await askToken(
        token
          ? "The token was refused. Enter a token with the admin permission."
          : "The admin page needs an API token.",
      );
      if (entered) continue;
    }
    if (!response.ok) throw new HttpError(response.status, await errorText(response));
    return response.json();
  }
}

async function errorText(response) {
  try {
    const body = await response.json();
    return body.error || body.message || response.statusText;
  } catch {
    return response.statusText || `HTTP ${response.status}`;
  }
}

function when(iso) {
  if (!iso) return "never";
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? iso : date.toLocaleString();
}

function bytes(n) {
  const units = ["B", "KB", "MB", "GB", "TB"];
  let value = Number(n) || 0;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(unit ? 1 : 0)} ${units[unit]}`;
}

function fill(list, items, render, empty) {
  list.replaceChildren(...(items.length ? items.map(render) : [h("li", { class: "empty" }, empty)]));
}

function facts(dl, pairs) {
  dl.replaceChildren(...pairs.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}

function jobCard(job) {
  const { total, done, failed, pending } = job.counts;
  const finished = ["completed", "partial", "failed", "cancelled"].includes(job.status);
  const title = job.kind === "retention" ? `retention ${job.label}` : `${job.kind} ${job.label}`;
  const target = job.params.destination ? ` → ${job.params.destination}` : "";
  const actions = h("div", { class: "actions" });
  if (!finished && !job.cancel_requested)
    actions.append(
      h("button", { type: "button", "data-action": "cancel", onclick: () => act(job, "cancel") }, "Cancel"),
    );
  if (finished && job.status !== "completed")
    actions.append(h("button", { type: "button", "data-action": "retry", onclick: () => act(job, "retry") }, "Retry"));
  return h(
    "li",
    { "data-job": job.id, "data-status": job.status },
    h(
      "div",
      { class: "head" },
      h("strong", {}, `#${job.id} ${title}${target}`),
      h("span", { class: `badge ${job.status}` }, job.cancel_requested && !finished ? "cancelling" : job.status),
      h("span", { class: "when" }, `attempt ${job.attempts} · ${when(job.updated_at)}`),
    ),
    job.subject ? h("div", { class: "sub" }, job.subject) : null,
    total
      ? h("progress", { max: total, value: done + failed, "aria-label": `${done + failed} of ${total} items` })
      : null,
    total
      ? h(
          "div",
          { class: "sub", "data-role": "counts" },
          `${done} done, ${failed} failed, ${pending} pending of ${total}`,
        )
      : null,
    job.error ? h("p", { class: "error", "data-role": "error" }, job.error) : null,
    job.status === "queued" && job.attempts ? h("div", { class: "sub" }, `next try ${when(job.not_before)}`) : null,
    actions.childElementCount ? actions : null,
  );
}

async function act(job, action) {
  try {
    await api(`/api/admin/jobs/${job.id}/${action}`, { method: "POST" });
  } catch (error) {
    toast(`Cannot ${action} job ${job.id}: ${error.message}`);
  }
  await refreshJobs();
}

async function refreshJobs() {
  const status = $("#job-status").value;
  const params = new URLSearchParams({ limit: "50" });
  if (status) params.set("status", status);
  const { jobs } = await api(`/api/admin/jobs?${params}`);
  fill($("#jobs"), jobs, jobCard, "No jobs.");
}

function contact(last) {
  return last ? `last contact ${when(last.time)} (${last.direction})` : "no contact since start";
}

async function refreshPeers() {
  const { peers, others } = await api("/api/admin/peers");
  const cards = [...peers.map((p) => ({ ...p, known: true })), ...others.map((o) => ({ ...o, known: false }))];
  fill(
    $("#peers"),
    cards,
    (p) =>
      h(
        "li",
        { "data-aet": p.aet },
        h(
          "div",
          { class: "head" },
          h("strong", {}, p.aet),
          h("span", { class: "sub" }, p.known ? `${p.host}:${p.port}` : "not a configured peer"),
        ),
        h("div", { class: "when" }, contact(p.last_contact)),
      ),
    "No peers configured.",
  );
}

async function refreshAssociations() {
  const { associations } = await api("/api/admin/associations");
  fill(
    $("#associations"),
    associations,
    (a) =>
      h(
        "li",
        {},
        h(
          "div",
          { class: "head" },
          h("strong", {}, `${a.calling_aet} → ${a.called_aet}`),
          h("span", { class: "badge" }, a.direction),
        ),
        h("div", { class: "when" }, `${a.address || ""} since ${when(a.since)}`),
      ),
    "None now.",
  );
}

async function refreshRoutes() {
  const { aet, routes } = await api("/api/admin/routes");
  fill(
    $("#routes"),
    [{ aet, kind: "this archive" }, ...routes],
    (r) => h("li", {}, h("div", { class: "head" }, h("strong", {}, r.aet), h("span", { class: "sub" }, r.kind))),
    "",
  );
}

/** A site's trust in the directory (docs/relay.md, "Trust"): its keys pinned, changed
 * (refused until an administrator accepts them), or revoked by the bridge. */
function siteState(s) {
  if (s.revoked) return "revoked";
  if (s.refused_fingerprint || !s.pinned) return "changed";
  return "trusted";
}

function siteCard(s, own) {
  const state = siteState(s);
  const words = { revoked: "revoked", changed: "keys changed", trusted: "trusted" };
  const offered = s.refused_fingerprint;
  return h(
    "li",
    { "data-site": s.site, "data-state": state },
    h(
      "div",
      { class: "head" },
      h("strong", {}, `site ${s.site}`),
      s.site === own ? h("span", { class: "sub" }, "this site") : null,
      h("span", { class: `badge ${state}` }, words[state]),
    ),
    h("div", { class: "fingerprint", "data-role": "fingerprint" }, s.fingerprint),
    offered
      ? h(
          "div",
          { class: "sub" },
          "offers new keys ",
          h("span", { class: "fingerprint", "data-role": "offered" }, offered),
          ", refused until accepted",
        )
      : null,
    offered
      ? h(
          "div",
          { class: "actions" },
          h(
            "button",
            { type: "button", "data-action": "accept", onclick: () => acceptKeys(s.site, offered) },
            "Accept new keys",
          ),
        )
      : null,
  );
}

/** Trust a site's new keys once the administrator compared the fingerprint with the one
 * that site's own admin page shows (out of band: phone, letter). */
async function acceptKeys(site, fingerprint) {
  const question =
    `Site ${site} now presents the keys with fingerprint\n\n${fingerprint}\n\n` +
    `Accept them only if site ${site}'s administrator confirms this fingerprint.`;
  if (!confirm(question)) return;
  const params = new URLSearchParams({ site, fingerprint });
  try {
    await api(`/api/admin/relay/accept?${params}`, { method: "POST" });
    toast(`Site ${site}: new keys accepted.`);
  } catch (error) {
    toast(`Cannot accept the keys of site ${site}: ${error.message}`);
  }
  await refreshFederation();
}

function aetCard(e, where) {
  return h(
    "li",
    { "data-aet": e.aet },
    h("div", { class: "head" }, h("strong", {}, e.aet), h("span", { class: "sub" }, where)),
    h("div", { class: "sub" }, (e.services || []).join(", ")),
  );
}

function transferCard(t) {
  const handled = t.expected ? t.expected - (t.remaining ?? 0) : 0;
  const way = t.direction === "sending" ? `to site ${t.destination}` : `from site ${t.source}`;
  const total = t.expected ? ` of ${t.expected}` : "";
  return h(
    "li",
    { "data-transfer": t.id, "data-status": t.status },
    h(
      "div",
      { class: "head" },
      h("strong", {}, `${t.destination_aet} ${way}`),
      h("span", { class: `badge ${t.status === "aborted" ? "failed" : t.status}` }, t.status),
      h("span", { class: "when" }, `started ${when(t.started)} · updated ${when(t.updated)}`),
    ),
    t.expected
      ? h("progress", { max: t.expected, value: handled, "aria-label": `${handled} of ${t.expected} instances` })
      : null,
    h("div", { class: "sub", "data-role": "counts" }, `${t.delivered} delivered, ${t.failed} failed${total}`),
    t.reason ? h("p", { class: "error" }, t.reason) : null,
    h("div", { class: "fingerprint" }, t.id),
  );
}

async function refreshFederation() {
  const relay = await api("/api/admin/relay");
  const section = $("#federation");
  section.hidden = !relay.site;
  if (!relay.site) return;
  facts($("#federation-site"), [
    ["site", relay.site],
    ["fingerprint", relay.fingerprint],
    ["bridge", relay.bridge || ""],
    ["NATS", relay.connected ? "connected" : "disconnected"],
  ]);
  $("#federation-site").dataset.connected = String(Boolean(relay.connected));
  fill($("#federation-sites"), relay.sites, (s) => siteCard(s, relay.site), "No site yet.");
  fill(
    $("#federation-exports"),
    relay.exports,
    (e) => aetCard(e, `to ${(e.sites || []).join(", ")}`),
    "This site exports nothing.",
  );
  fill($("#federation-imports"), relay.imports, (e) => aetCard(e, `at site ${e.site}`), "No remote AE titles.");
  fill($("#federation-transfers"), relay.transfers || [], transferCard, "No transfers.");
  await refreshShared();
}

/** The studies other sites shared with this one (docs/p2p.md, "Discovery"). */
async function refreshShared() {
  const list = $("#federation-shares");
  let shared;
  try {
    shared = await api("/api/p2p/federation");
  } catch (error) {
    fill(list, [], null, `Cannot read the shared studies: ${error.message}`);
    return;
  }
  fill(list, shared.shares || [], sharedCard, "No study shared with this site.");
}

function sharedCard(s) {
  const what = [s.patient_name, s.description, s.study_date].filter(Boolean).join(" · ");
  return h(
    "li",
    { "data-link": s.link_id, "data-online": String(Boolean(s.online)) },
    h(
      "div",
      { class: "head" },
      h("strong", {}, what || s.study),
      h("span", { class: "sub" }, `from site ${s.site}`),
      h("span", { class: `badge ${s.online ? "complete" : "failed"}` }, s.online ? "online" : "offline"),
    ),
    h("div", { class: "sub", "data-role": "counts" }, `${s.instances} instances, until ${when(s.expires_at)}`),
  );
}

async function refreshStorage() {
  const usage = await api("/api/admin/storage");
  const pairs = [
    ["patients", usage.counts.patient],
    ["studies", usage.counts.study],
    ["series", usage.counts.series],
    ["instances", usage.counts.image],
    ["stored", bytes(usage.bytes)],
  ];
  if (usage.filesystem)
    pairs.push(["disk free", `${bytes(usage.filesystem.free)} of ${bytes(usage.filesystem.total)}`]);
  facts($("#storage"), pairs);
}

async function refreshAudit() {
  const list = $("#audit");
  let events;
  try {
    events = await api("/api/audit?limit=20");
  } catch (error) {
    if (error.status === 404) {
      fill(list, [], null, "Audit trail not enabled.");
      return;
    }
    throw error;
  }
  fill(
    list,
    Array.isArray(events) ? events : events.events || [],
    (e) =>
      h(
        "li",
        {},
        h(
          "div",
          { class: "head" },
          h("strong", {}, e.event || "event"),
          outcomeBadge(e.outcome),
          h("span", { class: "when" }, when(e.time)),
        ),
        h("div", { class: "sub" }, [e.user, e.source].filter(Boolean).join(" · ")),
      ),
    "No events.",
  );
}

/** PS3.15 A.5.3 EventOutcomeIndicator: 0 success, 4 minor, 8 serious, 12 major failure. */
function outcomeBadge(outcome) {
  const code = String(outcome ?? "");
  const words = { 0: "success", 4: "minor failure", 8: "serious failure", 12: "major failure" };
  return h("span", { class: `badge ${code === "0" ? "completed" : "failed"}` }, words[code] || code);
}

async function refreshSettings() {
  const settings = await api("/api/admin/settings");
  const shown = (v) => (typeof v === "object" && v !== null ? JSON.stringify(v) : String(v));
  facts(
    $("#settings"),
    Object.entries(settings).map(([k, v]) => [k, shown(v)]),
  );
}

async function refresh() {
  const status = $("#admin-status");
  try {
    await Promise.all([
      refreshJobs(),
      refreshFederation(),
      refreshPeers(),
      refreshAssociations(),
      refreshRoutes(),
      refreshStorage(),
      refreshAudit(),
      refreshSettings(),
    ]);
    status.textContent = `Updated ${new Date().toLocaleTimeString()}.`;
    status.classList.remove("error");
  } catch (error) {
    status.textContent =
      error.status === 403 ? "This page needs the admin permission." : `Cannot load: ${error.message}`;
    status.classList.add("error");
  }
}

$("#refresh").addEventListener("click", refresh);
$("#job-status").addEventListener("change", () => refreshJobs().catch((e) => toast(e.message)));
setInterval(() => {
  if (document.visibilityState === "visible") refresh();
}, REFRESH_MS);
refresh();
