// The operator console: counts, the job list, a job's page and the operator actions, all
// through the service's JSON API. Every value that comes from the API is written with
// textContent or setAttribute (never as markup), so a file name holding HTML stays text.
// Not done here: live updates by push (it polls every REFRESH_MS), editing jobs, more than one
// page of the chart (the last ACTIVITY_MINUTES only).

const API = new URL("..", import.meta.url); // the app's root, also under an API Gateway stage prefix
const REFRESH_MS = 5000;
const PAGE_SIZE = 20;
const ACTIVITY_MINUTES = 60;
const KEY_STORAGE = "internetid-console-api-key";
const UNFINISHED = ["awaiting_upload", "queued", "processing"];
// The stats fields shown, in this order, when the answer has them.
const COUNTS = [["waiting", "Waiting"], ["active", "Active"], ["delayed", "Delayed (retry backoff)"],
  ["awaitingUpload", "Awaiting upload"], ["completed", "Completed"], ["failed", "Failed"],
  ["cancelled", "Cancelled"], ["deadLetter", "Dead letter"]];
const JOB_FIELDS = ["id", "type", "status", "progress", "fileName", "contentHash", "manifestUri",
  "registryAddress", "rpcUrl", "retryCount", "errorCode", "error", "createdAt", "startedAt",
  "completedAt", "updatedAt"];
const SVG = "http://www.w3.org/2000/svg";

const $ = (id) => document.getElementById(id);
const view = { offset: 0, jobId: null, job: null };

class Unauthorized extends Error {}

// --- talking to the API -----------------------------------------------------------------

function storedKey() { return sessionStorage.getItem(KEY_STORAGE); }

async function call(path, method = "GET") {
  const headers = { Accept: "application/json" };
  const key = storedKey();
  if (key) headers["x-api-key"] = key;
  const response = await fetch(new URL(path, API), { method, headers });
  const body = await response.json().catch(() => ({}));
  if (response.status === 401) {
    askForKey(key ? "The API key was refused (401): enter the right one." :
      "This deployment needs its API key (401): enter it to continue.");
    throw new Unauthorized(body.error || "unauthorized");
  }
  if (!response.ok) throw new Error(`${body.error || response.statusText} (${response.status}${body.code ? ", " + body.code : ""})`);
  return body;
}

// --- small DOM helpers: text only ---------------------------------------------------------

function el(tag, text, attributes = {}) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  return node;
}

function svg(tag, attributes = {}, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

function shown(node, visible) { node.hidden = !visible; }

function when(stamp) { return stamp ? new Date(stamp).toLocaleString() : "—"; }

function say(text, isError = false, kind = "action") {
  const box = $("message");
  box.textContent = text;
  box.classList.toggle("error", isError);
  box.dataset.kind = kind;
  shown(box, true);
}

function statusCell(status) { return el("span", status, { class: `status status-${status}` }); }

function describe(value) {
  if (value === null || value === undefined) return "—";
  return typeof value === "object" ? JSON.stringify(value) : String(value);
}

// --- the API key form ------------------------------------------------------------------

function askForKey(reason) {
  $("key-reason").textContent = reason;
  shown($("key-view"), true);
  shown($("main-view"), false);
  shown($("job-view"), false);
  $("key-input").focus();
}

$("key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem(KEY_STORAGE, $("key-input").value);
  $("key-input").value = "";
  shown($("key-view"), false);
  refresh();
});

$("forget-key").addEventListener("click", () => {
  sessionStorage.removeItem(KEY_STORAGE);
  refresh();
});

// --- confirmation ---------------------------------------------------------------------

function confirmed(question, action) {
  const dialog = $("confirm");
  $("confirm-text").textContent = question;
  $("confirm-yes").textContent = action;
  dialog.returnValue = "";
  dialog.showModal();
  $("confirm-no").focus();
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "yes"), { once: true });
  });
}

async function act(question, action, path, describeAnswer) {
  if (!(await confirmed(question, action))) return;
  try {
    say(describeAnswer(await call(path, "POST")));
  } catch (error) {
    if (error instanceof Unauthorized) return; // the key form is up; the page resumes once it is given
    say(`${action} failed: ${error.message}`, true);
  }
  refresh();
}

// --- the main page --------------------------------------------------------------------

function renderCounts(stats) {
  $("queue-state").textContent = stats.available ? "Queue reachable." :
    "Queue not reachable: its counts show 0.";
  const list = $("counts");
  list.replaceChildren();
  for (const [field, label] of COUNTS) {
    if (!(field in stats)) continue;
    const item = el("div", undefined, { "data-count": field });
    item.append(el("dt", label), el("dd", stats[field]));
    list.append(item);
  }
}

function renderJobs(page) {
  const body = $("jobs").tBodies[0];
  body.replaceChildren();
  for (const job of page.jobs) {
    const row = el("tr", undefined, { "data-job-id": job.id });
    const link = el("a", job.id, { href: `#/jobs/${job.id}` });
    const cells = [link, el("span", job.type), statusCell(job.status), el("span", `${job.progress}%`),
      el("span", job.fileName ?? "—"), el("span", when(job.createdAt))];
    for (const content of cells) { const cell = el("td"); cell.append(content); row.append(cell); }
    body.append(row);
  }
  if (!page.jobs.length) {
    const row = el("tr");
    row.append(el("td", "No jobs.", { colspan: "6" }));
    body.append(row);
  }
  const first = page.count ? page.offset + 1 : 0;
  $("page-range").textContent = `Jobs ${first}–${page.offset + page.count}`;
  $("previous-page").disabled = page.offset === 0;
  $("next-page").disabled = page.count < page.limit;
}

function renderFailures(report) {
  const body = $("failures").tBodies[0];
  body.replaceChildren();
  for (const group of report.failuresByCode) {
    const row = el("tr", undefined, { "data-error-code": group.errorCode ?? "" });
    row.append(el("td", group.errorCode ?? "(none)"), el("td", group.count));
    body.append(row);
  }
  shown($("failures"), report.failuresByCode.length > 0);
  shown($("no-failures"), report.failuresByCode.length === 0);
}

function renderChart(report) {
  const minutes = report.minutes;
  const width = 600, height = 180, left = 28, bottom = 30, top = 22;
  const most = Math.max(1, ...minutes.map((m) => m.completed + m.failed));
  const step = (width - left) / Math.max(1, minutes.length);
  const scale = (n) => (n / most) * (height - bottom - top);
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img",
    "aria-labelledby": "chart-title chart-summary" });
  const hatch = svg("pattern", { id: "hatch", width: 4, height: 4, patternUnits: "userSpaceOnUse",
    patternTransform: "rotate(45)" });
  hatch.append(svg("line", { x1: 0, y1: 0, x2: 0, y2: 4, class: "hatch-line" }));
  const defs = svg("defs");
  defs.append(hatch);
  chart.append(defs);
  chart.append(svg("line", { x1: left, y1: height - bottom, x2: width, y2: height - bottom, class: "axis" }));
  chart.append(svg("text", { x: 0, y: top + 4, class: "tick" }, String(most)));
  chart.append(svg("text", { x: 0, y: height - bottom, class: "tick" }, "0"));
  minutes.forEach((m, i) => {
    const x = left + i * step;
    const done = scale(m.completed), failed = scale(m.failed);
    const group = svg("g", { "data-minute": m.minute });
    group.append(svg("title", {}, `${new Date(m.minute).toLocaleTimeString()}: ${m.completed} completed, ${m.failed} failed`));
    group.append(svg("rect", { x, y: height - bottom - done, width: Math.max(1, step - 1), height: done, class: "bar-completed" }));
    group.append(svg("rect", { x, y: height - bottom - done - failed, width: Math.max(1, step - 1), height: failed, class: "bar-failed" }));
    chart.append(group);
    const last = i === minutes.length - 1;
    if (i % 15 === 0 || last) {
      chart.append(svg("text", { x: last ? width : x, y: height - bottom + 14, class: "tick",
        "text-anchor": last ? "end" : "start" },
        new Date(m.minute).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })));
    }
  });
  chart.append(svg("rect", { x: left, y: 4, width: 10, height: 10, class: "bar-completed" }));
  chart.append(svg("text", { x: left + 14, y: 13, class: "legend" }, "completed (solid)"));
  chart.append(svg("rect", { x: left + 130, y: 4, width: 10, height: 10, class: "bar-failed" }));
  chart.append(svg("text", { x: left + 144, y: 13, class: "legend" }, "failed (hatched)"));
  $("chart").replaceChildren(chart);
  const total = (field) => minutes.reduce((sum, m) => sum + m[field], 0);
  $("chart-summary").textContent =
    `In the last ${minutes.length} minutes: ${total("completed")} completed, ${total("failed")} failed.`;
}

function jobQuery() {
  const query = new URLSearchParams({ limit: PAGE_SIZE, offset: view.offset });
  for (const [name, select] of [["status", $("filter-status")], ["type", $("filter-type")]]) {
    if (select.value) query.set(name, select.value);
  }
  return `api/verification-jobs?${query}`;
}

async function refreshMain() {
  const [stats, page, report] = await Promise.all([
    call("api/verification-jobs/stats"), call(jobQuery()),
    call(`api/verification-jobs/activity?minutes=${ACTIVITY_MINUTES}`)]);
  renderCounts(stats);
  renderJobs(page);
  renderFailures(report);
  renderChart(report);
  shown($("main-view"), true);
}

$("filters").addEventListener("change", () => { view.offset = 0; refresh(); });
$("filters").addEventListener("submit", (event) => event.preventDefault());
$("previous-page").addEventListener("click", () => { view.offset = Math.max(0, view.offset - PAGE_SIZE); refresh(); });
$("next-page").addEventListener("click", () => { view.offset += PAGE_SIZE; refresh(); });
$("redrive").addEventListener("click", () => act(
  "Move the dead-letter queue's messages back to the work queue? Their jobs run again.",
  "Redrive", "api/verification-jobs/dead-letter/redrive",
  (answer) => `Redrive done: ${["moved", "remaining"].filter((name) => name in answer)
    .map((name) => `${name} ${answer[name]}`).join(", ")}.`));

// --- a job's page ---------------------------------------------------------------------

function renderFields(list, entries) {
  list.replaceChildren();
  for (const [name, value] of entries) {
    list.append(el("dt", name), el("dd", describe(value), { "data-field": name }));
  }
}

function readable(value, prefix = "") {
  // Nested objects flattened to dotted names: `onchain.creator`, `checks.creatorOk`, …
  return Object.entries(value).flatMap(([name, inner]) => inner && typeof inner === "object" && !Array.isArray(inner)
    ? readable(inner, `${prefix}${name}.`) : [[`${prefix}${name}`, inner]]);
}

function renderJob(job) {
  view.job = job;
  $("job-title").textContent = `${job.type} job ${job.id}`;
  $("job-progress").value = job.progress;
  $("job-progress-text").textContent = `${job.progress}% · ${job.status}`;
  const steps = [["created", job.createdAt], ["started", job.startedAt],
    [job.status === "failed" ? "failed" : job.status === "cancelled" ? "cancelled" : "completed", job.completedAt]];
  $("timeline").replaceChildren(...steps.map(([label, stamp]) => {
    const item = el("li", undefined, { class: stamp ? "reached" : "", "data-step": label });
    item.append(el("span", label, { class: "label" }), el("time", when(stamp), stamp ? { datetime: stamp } : {}));
    return item;
  }));
  shown($("job-error-section"), Boolean(job.error || job.errorCode));
  $("job-error-code").textContent = job.errorCode ?? "—";
  $("job-error").textContent = job.error ?? "";
  renderFields($("job-fields"), JOB_FIELDS.filter((name) => name in job).map((name) => [name, job[name]]));
  shown($("result-section"), job.result !== null && job.result !== undefined);
  if (job.result) {
    renderFields($("result-readable"), readable(job.result));
    $("result-json").textContent = JSON.stringify(job.result, null, 2);
  }
  shown($("retry-job"), job.status === "failed");
  shown($("cancel-job"), UNFINISHED.includes(job.status));
  shown($("download-proof"), job.type === "proof" && Boolean(job.result));
  shown($("job-view"), true);
}

async function refreshJob() {
  renderJob(await call(`api/verification-jobs/${encodeURIComponent(view.jobId)}`));
}

$("retry-job").addEventListener("click", () => act(
  "Run this failed job again?", "Retry", `api/verification-jobs/${view.jobId}/retry`,
  (answer) => `Retry accepted: the job is ${answer.status}.`));
$("cancel-job").addEventListener("click", () => act(
  "Cancel this job? It will not run or complete later.", "Cancel job", `api/verification-jobs/${view.jobId}/cancel`,
  (answer) => `Job cancelled: it is ${answer.status}.`));
$("download-proof").addEventListener("click", () => {
  const file = new Blob([JSON.stringify(view.job.result, null, 2) + "\n"], { type: "application/json" });
  const link = el("a", undefined, { href: URL.createObjectURL(file), download: "proof.json" });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 10000);
});

// --- routing and refreshing -------------------------------------------------------------

function route() {
  const match = location.hash.match(/^#\/jobs\/([^/]+)$/);
  view.jobId = match ? decodeURIComponent(match[1]) : null;
  for (const id of ["main-view", "job-view", "key-view", "message"]) shown($(id), false);
  refresh();
}

let running = null;
async function refresh() {
  if (running) return running;
  running = (async () => {
    try {
      await (view.jobId ? refreshJob() : refreshMain());
      if ($("message").dataset.kind === "load") shown($("message"), false);
      $("updated").textContent = `Updated ${new Date().toLocaleTimeString()}; refreshes every ${REFRESH_MS / 1000} s.`;
    } catch (error) {
      if (!(error instanceof Unauthorized)) say(`Could not load: ${error.message}`, true, "load");
    } finally {
      shown($("forget-key"), Boolean(storedKey()));
      running = null;
    }
  })();
  return running;
}

function paused() { return document.querySelector("dialog[open]") !== null || !$("key-view").hidden; }

window.addEventListener("hashchange", route);
setInterval(() => { if (!paused() && !document.hidden) refresh(); }, REFRESH_MS);
route();
