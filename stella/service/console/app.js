// Stella Export Center Console: plain JavaScript, no build step, no third-party code.
// It calls the same API as every other client, with the same token; the server enforces
// every rule, the Console only hides what a token cannot do. Untrusted text is always
// rendered with textContent.
"use strict";

const API = "/api/export";
const TERMINAL = new Set(["succeeded", "failed", "cancelled", "expired"]);
const state = { token: null, tenant: null, claims: null, run: null, stream: null, schedulePoll: null };
const $ = (id) => document.getElementById(id);

function decodeClaims(token) {
  const part = token.split(".")[1] || "";
  const json = atob(part.replace(/-/g, "+").replace(/_/g, "/").padEnd(Math.ceil(part.length / 4) * 4, "="));
  return JSON.parse(json);
}

function scopes() { return new Set(((state.claims && state.claims.scope) || "").split(" ")); }

function headers(extra) {
  const h = { Authorization: "Bearer " + state.token, ...(extra || {}) };
  if (state.tenant) h["X-Stella-Tenant"] = state.tenant;
  return h;
}

function showError(error) {
  $("error-code").textContent = error.code || "ERR_EXPORT_INTERNAL";
  $("error-message").textContent = error.message || String(error);
  $("error-trace").textContent = error.traceId ? "trace " + error.traceId : "";
  $("error").hidden = false;
}

function clearError() { $("error").hidden = true; }

async function api(path, options) {
  const response = await fetch(API + path, { ...(options || {}), headers: headers((options || {}).headers) });
  if (!response.ok) {
    let error;
    try { error = await response.json(); } catch (_) { error = { code: "HTTP_" + response.status, message: response.statusText }; }
    showError(error);
    throw error;
  }
  return response;
}

function cell(row, text) { const td = document.createElement("td"); td.textContent = text; row.appendChild(td); return td; }

async function loadProfiles() {
  const data = await (await api("/profiles")).json();
  const body = $("profiles").tBodies[0];
  body.replaceChildren();
  const select = $("run-profile");
  select.replaceChildren();
  const scheduleProfiles = $("schedule-profile");
  scheduleProfiles.replaceChildren();
  for (const p of data.builtin.filter((b) => b.status !== "planned")) {
    const option = document.createElement("option");
    option.value = p.name; option.textContent = p.name;
    scheduleProfiles.appendChild(option);
  }
  for (const p of [...data.builtin, ...data.stored.map((s) => ({ ...s, kind: "stored (" + s.profile + ")", status: "rev " + s.revision }))]) {
    const row = body.insertRow();
    cell(row, p.name); cell(row, p.kind); cell(row, p.status); cell(row, p.contents || p.description || ""); cell(row, (p.targets || []).join(" "));
    if (p.status !== "planned") {
      const option = document.createElement("option");
      option.value = p.name; option.textContent = p.name;
      select.appendChild(option);
    }
  }
}

async function loadRuns() {
  const data = await (await api("/runs?limit=20")).json();
  const body = $("runs").tBodies[0];
  body.replaceChildren();
  for (const run of data.items) {
    const row = body.insertRow();
    row.className = "clickable";
    row.dataset.runId = run.runId;
    cell(row, run.runId.slice(0, 16) + "…"); cell(row, run.profile);
    cell(row, run.status).className = "status-" + run.status; cell(row, run.createdAt);
    row.addEventListener("click", () => openRun(run.runId));
  }
}

function describeTrigger(trigger) {
  if (trigger.type === "cron") return "cron " + trigger.cron + " (" + trigger.timezone + ")";
  if (trigger.type === "once") return "once at " + trigger.at;
  return "on " + trigger.on + " (quiet " + trigger.quietSeconds + " s)";
}

function describeFire(fire) {
  // The slot shows its run's state: launched while queued or running, then the run's outcome.
  const targets = (fire.result && fire.result.targets) || [];
  const published = targets.filter((t) => t.status !== "failed").length;
  let text = fire.status + " · " + fire.key;
  if (targets.length) text += " · " + published + "/" + targets.length + " targets published";
  if (fire.result && fire.result.error) text += " · " + fire.result.error.code;
  return text;
}

function actionButton(cellNode, label, action, name) {
  const button = document.createElement("button");
  button.type = "button";
  button.textContent = label;
  button.dataset.action = action;
  button.addEventListener("click", () => scheduleAction(name, action).catch(() => {}));
  cellNode.appendChild(button);
}

async function loadSchedules() {
  const data = await (await api("/schedules")).json();
  const body = $("schedules").tBodies[0];
  body.replaceChildren();
  const canRun = scopes().has("export:run");
  let pending = false;
  for (const schedule of data.items) {
    const row = body.insertRow();
    row.dataset.schedule = schedule.name;
    const signing = schedule.sign === true ? ", signature required" : schedule.sign === false ? ", unsigned" : "";
    cell(row, schedule.name + " (" + schedule.profile + signing + ")");
    cell(row, describeTrigger(schedule.trigger));
    cell(row, schedule.nextSlot || "-");
    const last = schedule.fires[0];
    const fireCell = cell(row, last ? describeFire(last) : "-");
    fireCell.className = "last-fire" + (last ? " status-" + last.status : "");
    if (last) {
      fireCell.dataset.status = last.status;
      pending = pending || last.status === "launched";
      if (last.result && last.result.runId) {
        fireCell.classList.add("clickable");
        fireCell.dataset.runId = last.result.runId;
        fireCell.title = "open run " + last.result.runId;
        fireCell.addEventListener("click", () => openRun(last.result.runId));
      }
    }
    cell(row, schedule.paused ? "paused" : "active").className = "schedule-state";
    const actions = cell(row, "");
    if (canRun) {
      actionButton(actions, "Run now", "run", schedule.name);
      actionButton(actions, schedule.paused ? "Resume" : "Pause", schedule.paused ? "resume" : "pause", schedule.name);
      actionButton(actions, "Delete", "delete", schedule.name);
    }
  }
  $("schedules-empty").hidden = data.items.length > 0;
  // A launched slot becomes its run's outcome: look again until none is pending.
  clearTimeout(state.schedulePoll);
  if (pending) state.schedulePoll = setTimeout(() => loadSchedules().catch(() => {}), 1000);
}

async function scheduleAction(name, action) {
  clearError();
  const path = "/schedules/" + encodeURIComponent(name);
  if (action === "delete") {
    if (!confirm("Delete schedule " + name + "?")) return;
    await api(path, { method: "DELETE" });
  } else {
    await api(path + "/" + action, { method: "POST" });
  }
  await loadSchedules();
  if (action === "run") loadRuns().catch(() => {});
}

function words(text) { return text.split(/[\s;]+/).filter(Boolean); }

async function createSchedule(event) {
  event.preventDefault();
  clearError();
  const body = {
    name: $("schedule-name").value.trim(),
    profile: $("schedule-profile").value,
    selectors: words($("schedule-selectors").value),
    targets: words($("schedule-targets").value),
    catchUp: $("schedule-catch-up").value,
    sign: $("schedule-sign").checked ? true : null,
  };
  const kind = document.querySelector("input[name='schedule-trigger']:checked").value;
  if (kind === "cron") { body.cron = $("schedule-cron").value.trim(); body.timezone = $("schedule-timezone").value.trim() || "UTC"; }
  else if (kind === "at") body.at = $("schedule-at").value.trim();
  else {
    body.on = $("schedule-on").value;
    body.quietSeconds = Number($("schedule-quiet").value);
    body.maxDelaySeconds = Number($("schedule-max-delay").value);
  }
  await api("/schedules", { method: "POST", body: JSON.stringify(body), headers: { "Content-Type": "application/json" } });
  $("schedule-form").reset();
  await loadSchedules();
}

function renderRun(run) {
  state.run = run;
  $("run-detail").hidden = false;
  $("run-id").textContent = run.runId;
  $("run-status").textContent = run.status;
  $("run-status").className = "status-" + run.status;
  const progress = run.progress || {};
  $("run-progress").value = run.status === "succeeded" ? 100 : (progress.percent || 0);
  $("run-counts").textContent = progress.recordsRead !== undefined
    ? progress.recordsRead + " records read, " + (progress.filesWritten || 0) + " files written" : "";
  $("run-error").hidden = !run.error;
  $("run-error").textContent = run.error ? run.error.code + ": " + run.error.message : "";
  const ready = run.status === "succeeded";
  $("download").disabled = !ready || !scopes().has("export:download");
  $("verify").disabled = !ready || !scopes().has("export:download");
  $("cancel").hidden = TERMINAL.has(run.status) || !scopes().has("export:run");
  const body = $("artifacts").tBodies[0];
  body.replaceChildren();
  if (ready && run.result) {
    for (const [name, bytes, digest] of [[run.result.archive, run.result.archiveBytes, run.result.archiveDigest], ["export.json", "", run.result.manifestDigest]]) {
      const row = body.insertRow();
      cell(row, name); cell(row, String(bytes)); cell(row, digest);
    }
  }
}

function addEvent(event) {
  const item = document.createElement("li");
  item.textContent = "#" + event.id + " " + event.type + " " + JSON.stringify(event.data);
  item.dataset.type = event.type;
  $("events").appendChild(item);
}

async function follow(runId) {
  // SSE over fetch (EventSource cannot send Authorization); resumes with Last-Event-ID.
  let last = 0;
  const token = {};
  state.stream = token;
  while (state.stream === token) {
    let finished = false;
    try {
      const response = await api("/runs/" + runId + "/events", { headers: { "Last-Event-ID": String(last) } });
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done || state.stream !== token) break;
        buffer += decoder.decode(value, { stream: true });
        let cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          const event = { id: 0, type: "message", data: null };
          for (const line of block.split("\n")) {
            if (line.startsWith("id: ")) event.id = Number(line.slice(4));
            else if (line.startsWith("event: ")) event.type = line.slice(7);
            else if (line.startsWith("data: ")) event.data = JSON.parse(line.slice(6));
          }
          if (!event.data) continue;
          last = event.id;
          addEvent(event);
          if (event.type === "progress" || event.type === "started" || TERMINAL.has(event.type)) {
            renderRun(await (await api("/runs/" + runId)).json());
          }
          if (TERMINAL.has(event.type)) finished = true;
        }
      }
    } catch (_) {
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
    if (finished) break;
    const current = await (await api("/runs/" + runId)).json();
    if (TERMINAL.has(current.status)) { renderRun(current); break; }
  }
  loadRuns().catch(() => {});
}

async function openRun(runId) {
  clearError();
  $("events").replaceChildren();
  $("download-result").hidden = true;
  $("verify-result").hidden = true;
  renderRun(await (await api("/runs/" + runId)).json());
  follow(runId);
}

async function startRun(event) {
  event.preventDefault();
  clearError();
  const selectors = words($("run-selectors").value);
  const body = JSON.stringify({ profile: $("run-profile").value, selectors });
  const response = await api("/runs", { method: "POST", body, headers: { "Content-Type": "application/json", "Idempotency-Key": crypto.randomUUID() } });
  const run = await response.json();
  await loadRuns();
  openRun(run.runId);
}

function hex(buffer) { return Array.from(new Uint8Array(buffer), (b) => b.toString(16).padStart(2, "0")).join(""); }

async function download() {
  clearError();
  const run = state.run;
  const response = await api("/runs/" + run.runId + "/download");
  const bytes = await response.arrayBuffer();
  const digest = "sha256:" + hex(await crypto.subtle.digest("SHA-256", bytes));
  const expected = (response.headers.get("ETag") || "").replace(/"/g, "");
  $("download-bytes").textContent = String(bytes.byteLength);
  $("download-digest").textContent = digest;
  const ok = digest === expected && digest === run.result.archiveDigest;
  $("download-check").textContent = ok ? "digest verified" : "DIGEST MISMATCH (expected " + expected + ")";
  $("download-result").hidden = false;
  if (!ok) return;
  const link = document.createElement("a");
  link.href = URL.createObjectURL(new Blob([bytes], { type: "application/zstd" }));
  link.download = run.result.archive;
  document.body.appendChild(link);
  link.click();
  link.remove();
}

async function verify() {
  clearError();
  const report = await (await api("/runs/" + state.run.runId + "/verification")).json();
  $("verify-result").textContent = report.ok
    ? "Verified: " + report.filesChecked + " files match export.json (" + report.exportId + "); signature " + report.signature.status
    : "Verification FAILED: " + report.mismatches.map((m) => m.path + " " + m.reason).join("; ");
  $("verify-result").hidden = false;
}

async function cancelRun() {
  await api("/runs/" + state.run.runId + "/cancel", { method: "POST" });
}

function signOut() {
  sessionStorage.removeItem("stella.token");
  sessionStorage.removeItem("stella.tenant");
  location.reload();
}

async function enter(token, tenant) {
  state.token = token;
  state.claims = decodeClaims(token);
  const tenants = state.claims.tenants || (state.claims.tenant ? [state.claims.tenant] : []);
  state.tenant = tenant || tenants[0];
  sessionStorage.setItem("stella.token", token);
  sessionStorage.setItem("stella.tenant", state.tenant);
  await loadProfiles();  // proves the token works before the workspace shows
  $("sign-in").hidden = true;
  $("workspace").hidden = false;
  $("identity").hidden = false;
  $("who").textContent = state.claims.sub + " @ " + state.tenant + " (" + [...scopes()].join(", ") + ")";
  const canRun = scopes().has("export:run");
  $("start-form").hidden = !canRun;
  $("read-only-note").hidden = canRun;
  $("schedule-form").hidden = !canRun;
  $("schedules-read-only").hidden = canRun;
  await loadRuns();
  await loadSchedules();
}

function init() {
  $("token").addEventListener("input", () => {
    const select = $("tenant");
    select.replaceChildren();
    try {
      const claims = decodeClaims($("token").value.trim());
      for (const t of claims.tenants || [claims.tenant]) {
        const option = document.createElement("option"); option.value = t; option.textContent = t; select.appendChild(option);
      }
    } catch (_) { /* not a token yet */ }
  });
  $("sign-in-form").addEventListener("submit", (event) => {
    event.preventDefault();
    clearError();
    enter($("token").value.trim(), $("tenant").value).catch(() => {});
  });
  $("start-form").addEventListener("submit", (event) => { startRun(event).catch(() => {}); });
  $("refresh-runs").addEventListener("click", () => loadRuns().catch(() => {}));
  $("schedule-form").addEventListener("submit", (event) => { createSchedule(event).catch(() => {}); });
  $("refresh-schedules").addEventListener("click", () => loadSchedules().catch(() => {}));
  $("download").addEventListener("click", () => download().catch(() => {}));
  $("verify").addEventListener("click", () => verify().catch(() => {}));
  $("cancel").addEventListener("click", () => cancelRun().catch(() => {}));
  $("sign-out").addEventListener("click", signOut);
  const saved = sessionStorage.getItem("stella.token");
  if (saved) enter(saved, sessionStorage.getItem("stella.tenant")).catch(() => {});
}

init();
