// The admin page: peers, routes, associations, jobs (cancel, retry), storage, audit
// events and settings, from /api/admin/... (web/admin.py) and /api/audit, with the
// Bearer token of auth.js.  Refreshes itself every few seconds while visible.

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
