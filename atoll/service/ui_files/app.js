// atoll dashboard. Everything shown comes from the JSON API and is written with textContent (never
// innerHTML), so a name or a message holding markup is shown as text.
"use strict";

const TOKEN_KEY = "atoll.token";
const JOBS_KEY = "atoll.jobs";
const FINAL = new Set(["succeeded", "failed"]);
const POLL_MS = 1000;

const state = { pipelines: [], loaded: false, listError: null, results: {} };

// -- small DOM helpers ---------------------------------------------------------------------------

/** Return a new element with a class and children (strings become text nodes). */
function el(tag, cls, ...children) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(typeof child === "string" ? document.createTextNode(child) : child);
  }
  return node;
}

function link(href, text, cls) {
  const a = el("a", cls, text);
  a.href = href;
  return a;
}

/** Return JSON text: on one line when short, a list one element a line, else indented. */
function pretty(value) {
  const flat = JSON.stringify(value);
  if (flat === undefined || flat.length <= 100) return String(flat);
  if (Array.isArray(value)) {
    const lines = value.map((item) => JSON.stringify(item));
    if (lines.every((line) => line.length <= 120)) return "[\n  " + lines.join(",\n  ") + "\n]";
  }
  return JSON.stringify(value, null, 2);
}

function statusBadge(status) {
  return el("span", "status status-" + String(status).replace(/[^a-z]/g, ""), String(status));
}

function seconds(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return "";
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(ms < 10000 ? 2 : 1)} s`;
}

// -- the API, with the token ---------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, body) {
    const detail = body && body.error ? body.error : { name: `HTTP ${status}`, message: "" };
    super(detail.message || detail.name);
    this.status = status;
    this.detail = detail;
  }
}

let tokenPrompt = null;  // one prompt at a time, however many calls are refused
let declined = false;  // cancelled once: the polls stop asking until the Token button is used

/** Ask for a token in the dialog; resolve true when one was entered, false when cancelled. */
function askToken(reason) {
  if (tokenPrompt) return tokenPrompt;
  const dialog = document.getElementById("token-dialog");
  const input = document.getElementById("token-input");
  document.getElementById("token-reason").textContent = reason || "";
  input.value = "";
  tokenPrompt = new Promise((resolve) => {
    dialog.addEventListener("close", () => {
      tokenPrompt = null;
      const ok = dialog.returnValue === "ok" && input.value.trim() !== "";
      if (ok) sessionStorage.setItem(TOKEN_KEY, input.value.trim());
      declined = !ok;
      resolve(ok);
    }, { once: true });
  });
  dialog.showModal();
  input.focus();
  return tokenPrompt;
}

/** Call the API; on 401 ask for a token and try again. Return the parsed JSON body. */
async function api(method, path, body) {
  for (;;) {
    const headers = { Accept: "application/json" };
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) headers.Authorization = "Bearer " + token;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(path, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body),
    });
    let parsed = null;
    try { parsed = await response.json(); } catch (_) { parsed = null; }
    if (response.status === 401) {
      const reason = parsed && parsed.error ? parsed.error.message : "The service refused the call.";
      if (!declined && await askToken(reason)) continue;
    }
    if (!response.ok) throw new ApiError(response.status, parsed);
    return { status: response.status, body: parsed };
  }
}

// -- jobs started from this browser --------------------------------------------------------------

function loadJobs() {
  try { return JSON.parse(sessionStorage.getItem(JOBS_KEY)) || []; } catch (_) { return []; }
}

function saveJobs(jobs) {
  sessionStorage.setItem(JOBS_KEY, JSON.stringify(jobs.slice(0, 100)));
}

function updateJob(id, changes) {
  const jobs = loadJobs();
  const job = jobs.find((j) => j.id === id);
  if (job) Object.assign(job, changes);
  saveJobs(jobs);
  return job;
}

function duration(job) {
  const record = job.record || {};
  const start = Date.parse(record.started_at || record.submitted_at || "") || job.submitted;
  const end = Date.parse(record.finished_at || "") || (FINAL.has(job.status) ? job.seen : Date.now());
  return end - start;
}

let polling = false;

/** Ask the service about every job not finished yet, then redraw what shows them. */
async function pollJobs() {
  if (polling) return;
  polling = true;
  try {
    for (const job of loadJobs().filter((j) => !FINAL.has(j.status))) {
      try {
        const { body } = await api("GET", "/jobs/" + encodeURIComponent(job.id));
        updateJob(job.id, { status: body.status, record: body, seen: Date.now(), problem: null });
      } catch (err) {
        if (err.status === 404) updateJob(job.id, { status: "unknown", problem: err.message });
        else updateJob(job.id, { problem: err.message });
      }
    }
  } finally {
    polling = false;
  }
  renderJobList();
  const route = parseRoute();
  if (route.kind === "job" || route.kind === "pipeline") renderView();
}

function renderJobList() {
  const list = document.getElementById("job-list");
  const jobs = loadJobs();
  const route = parseRoute();
  list.replaceChildren();
  if (!jobs.length) {
    list.append(el("li", "muted", "none yet"));
    return;
  }
  for (const job of jobs) {
    const item = el("li", route.kind === "job" && route.id === job.id ? "current" : "");
    const a = link("#/jobs/" + encodeURIComponent(job.id), "");
    a.append(el("div", "mono small", job.pipeline),
             el("div", "meta", statusBadge(job.status), el("span", "", seconds(duration(job)))));
    item.append(a);
    list.append(item);
  }
}

// -- the pipeline graph --------------------------------------------------------------------------

function drawStage(stage) {
  const branching = stage.branches && stage.branches.length > 0;
  const node = el("div", "node" + (branching ? " branching" : ""),
                  el("div", "op", stage.operator),
                  el("div", "fn", branching ? `${stage.branches.length} branches` : stage.function));
  if (stage.bound && stage.bound.length) node.append(el("div", "bound", stage.bound.join(", ")));
  if (stage.kwargs && stage.kwargs.length) {
    const chips = el("div", "");
    for (const name of stage.kwargs) chips.append(el("span", "chip", "kwarg " + name));
    node.append(chips);
  }
  if (!branching) return node;
  const group = el("div", "seq", node, el("div", "arrow"));
  const row = el("div", "branches");
  stage.branches.forEach((branch, index) => {
    const column = el("div", "branch", el("div", "branch-label", `branch ${index}`));
    column.append(drawSequence(branch));
    row.append(column);
  });
  group.append(row);
  return group;
}

/** Return the drawing of a list of stages (an empty one is the identity). */
function drawSequence(stages) {
  const seq = el("div", "seq");
  if (!stages.length) {
    seq.append(el("div", "node identity", el("div", "op", "identity"), el("div", "fn", "unchanged")));
    return seq;
  }
  stages.forEach((stage, index) => {
    if (index) seq.append(el("div", "arrow"));
    seq.append(drawStage(stage));
  });
  return seq;
}

// -- views ---------------------------------------------------------------------------------------

function parseRoute() {
  const hash = location.hash.replace(/^#\/?/, "");
  const [kind, ...rest] = hash.split("/");
  const id = rest.length ? decodeURIComponent(rest.join("/")) : null;
  if (kind === "pipelines" && id) return { kind: "pipeline", id };
  if (kind === "jobs" && id) return { kind: "job", id };
  return { kind: "home" };
}

function renderPipelineList() {
  const list = document.getElementById("pipeline-list");
  const route = parseRoute();
  list.replaceChildren();
  if (state.listError) {
    list.append(el("li", "muted", "could not list: " + state.listError));
    return;
  }
  if (!state.pipelines.length) {
    list.append(el("li", "muted", state.loaded ? "no pipelines registered" : "loading…"));
    return;
  }
  for (const p of state.pipelines) {
    const item = el("li", route.kind === "pipeline" && route.id === p.name ? "current" : "");
    const a = link("#/pipelines/" + encodeURIComponent(p.name), "");
    a.append(el("div", "mono", p.name),
             el("div", "meta", el("span", "", `${p.graph.length} stages`), el("span", "", p.executor || "")));
    item.append(a);
    list.append(item);
  }
}

function renderHome(view) {
  view.append(el("h1", "", "Pipelines"));
  if (state.listError) {
    view.append(el("p", "muted", "The pipelines could not be listed: " + state.listError));
    return;
  }
  view.append(el("p", "muted", state.pipelines.length
    ? "Choose a pipeline to see its stages and try it."
    : (state.loaded ? "No pipeline is registered." : "Loading…")));
  for (const p of state.pipelines) {
    const card = el("section", "card");
    card.append(el("h3", "", link("#/pipelines/" + encodeURIComponent(p.name), p.name)));
    card.append(el("div", "graph", drawSequence(p.graph)));
    view.append(card);
  }
}

function renderPipeline(view, name) {
  const p = state.pipelines.find((x) => x.name === name);
  if (!p) {
    view.append(el("h1", "", name), el("p", "muted", state.loaded ? "No pipeline of this name." : "Loading…"));
    return;
  }
  view.append(el("h1", "mono", p.name));
  const facts = el("dl", "facts");
  facts.append(el("dt", "", "endpoint"), el("dd", "mono", "POST " + p.endpoint),
               el("dt", "", "executor"), el("dd", "mono", p.executor || ""),
               el("dt", "", "runtime kwargs"), el("dd", "mono", p.kwargs.length ? p.kwargs.join(", ") : "none"),
               el("dt", "", "sig"), el("dd", "mono small", p.sig));
  view.append(facts, el("h3", "", "Stages"), el("div", "graph", drawSequence(p.graph)));
  view.append(el("h3", "", "Try it"), tryForm(p));
}

function tryForm(p) {
  const form = el("form", "try");
  form.id = "try-form";
  const dataId = "try-data";
  const dataLabel = el("label", "", "data (JSON)");
  dataLabel.htmlFor = dataId;
  const data = el("textarea", "");
  data.id = dataId;
  data.value = (state.results[p.name] && state.results[p.name].dataText) || "[1, 2, 3]";
  form.append(dataLabel, data);
  const kwargInputs = {};
  for (const name of p.kwargs) {
    const label = el("label", "", `${name} (JSON)`);
    const input = el("input", "");
    input.type = "text";
    input.name = "kwarg-" + name;
    input.id = "kwarg-" + name;
    input.setAttribute("data-kwarg", name);
    label.htmlFor = input.id;
    kwargInputs[name] = input;
    form.append(label, input);
  }
  const asyncBox = el("input", "");
  asyncBox.type = "checkbox";
  asyncBox.id = "try-async";
  const asyncLabel = el("label", "check", asyncBox, "run as a job (async), then follow it");
  const run = el("button", "", "Run");
  run.type = "submit";
  run.id = "try-run";
  form.append(el("div", "form-row", asyncLabel, el("span", "spacer"), run));
  const out = el("div", "result-box");
  out.id = "try-output";
  form.append(out);
  showOutcome(out, state.results[p.name]);

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const outcome = { dataText: data.value };
    state.results[p.name] = outcome;
    let body;
    try {
      body = { data: JSON.parse(data.value), kwargs: {} };
      for (const [name, input] of Object.entries(kwargInputs)) {
        if (input.value.trim() === "") continue;
        body.kwargs[name] = JSON.parse(input.value);
      }
    } catch (err) {
      outcome.error = { name: "InvalidJSON", message: "This is not JSON: " + err.message };
      showOutcome(out, outcome);
      return;
    }
    if (asyncBox.checked) body.async = true;
    run.disabled = true;
    outcome.pending = true;
    showOutcome(out, outcome);
    try {
      const { status, body: answer } = await api("POST", p.endpoint, body);
      if (status === 202) {
        const jobs = loadJobs();
        jobs.unshift({ id: answer.job_id, pipeline: p.name, status: "queued", submitted: Date.now() });
        saveJobs(jobs);
        outcome.job = answer.job_id;
        renderJobList();
        pollJobs();
      } else {
        outcome.results = answer.results;
      }
    } catch (err) {
      outcome.error = err.detail || { name: "Error", message: String(err.message) };
      outcome.status = err.status;
    } finally {
      outcome.pending = false;
      run.disabled = false;
    }
    showOutcome(out, outcome);
  });
  return form;
}

function showOutcome(out, outcome) {
  out.replaceChildren();
  if (!outcome) return;
  if (outcome.pending) {
    out.append(el("p", "muted", "running…"));
  } else if (outcome.error) {
    out.append(errorBox(outcome.error, outcome.status));
  } else if (outcome.job) {
    const job = loadJobs().find((j) => j.id === outcome.job);
    const status = job ? job.status : "queued";
    const line = el("p", "job-line", "Job ", link("#/jobs/" + encodeURIComponent(outcome.job), outcome.job, "mono"),
                    " ", statusBadge(status));
    line.id = "try-job";
    out.append(line);
    if (job && job.record) out.append(jobOutcome(job.record));
  } else if ("results" in outcome) {
    out.append(el("div", "small muted", "results"), el("pre", "results", pretty(outcome.results)));
  }
}

/** Return a box showing an error's name, message, stage, item and traceback. */
function errorBox(error, status) {
  const box = el("div", "error-box");
  box.append(el("div", "name", (status ? `${status} ` : "") + (error.name || "Error")),
             el("div", "message", error.message || ""));
  const facts = el("dl", "facts");
  if (error.stage) {
    const s = error.stage;
    facts.append(el("dt", "", "stage"),
                 el("dd", "mono stage", `${s.index} ${s.operator}(${s.function})` + (s.path && s.path.includes("/") ? `  at ${s.path}` : "")));
  }
  if ("item" in error && error.item !== null) {
    facts.append(el("dt", "", "item"), el("dd", "mono item", pretty(error.item)));
  }
  if (facts.childNodes.length) box.append(facts);
  if (error.traceback) box.append(el("div", "small muted", "traceback"), el("pre", "traceback", error.traceback));
  return box;
}

function jobOutcome(record) {
  const wrap = el("div", "");
  if (record.status === "failed" && record.error) wrap.append(errorBox(record.error));
  if (record.status === "succeeded") {
    wrap.append(el("div", "small muted", "results"), el("pre", "results", pretty(record.results)));
  }
  return wrap;
}

function renderJob(view, id) {
  const job = loadJobs().find((j) => j.id === id);
  view.append(el("h1", "", "Job"), el("p", "mono small", id));
  if (!job) {
    view.append(el("p", "muted", "This job was not started from this browser; asking the service…"));
    api("GET", "/jobs/" + encodeURIComponent(id)).then(({ body }) => {
      const jobs = loadJobs();
      jobs.unshift({ id, pipeline: body.pipeline || "?", status: body.status, record: body,
                     submitted: Date.now(), seen: Date.now() });
      saveJobs(jobs);
      renderJobList();
      renderView();
    }, (err) => view.append(errorBox(err.detail || { name: "Error", message: err.message }, err.status)));
    return;
  }
  const record = job.record || {};
  const facts = el("dl", "facts");
  facts.append(el("dt", "", "pipeline"), el("dd", "", link("#/pipelines/" + encodeURIComponent(job.pipeline), job.pipeline, "mono")),
               el("dt", "", "status"), el("dd", "", statusBadge(job.status)),
               el("dt", "", "duration"), el("dd", "", seconds(duration(job))));
  for (const key of ["submitted_at", "started_at", "finished_at"]) {
    if (record[key]) facts.append(el("dt", "", key.replace("_at", "")), el("dd", "mono small", record[key]));
  }
  if (record.callback) {
    facts.append(el("dt", "", "callback"),
                 el("dd", "mono small", `${record.callback.state} (${record.callback.attempts} attempts) ${record.callback.url}`));
  }
  view.append(facts);
  if (job.problem) view.append(el("p", "muted", "Last poll: " + job.problem));
  view.append(jobOutcome(record));
}

function renderView() {
  const view = document.getElementById("view");
  const route = parseRoute();
  // keep a form being filled in: only the job line and outcome below it change while polling
  const out = document.getElementById("try-output");
  if (route.kind === "pipeline" && out && view.dataset.route === location.hash) {
    showOutcome(out, state.results[route.id]);
    return;
  }
  view.replaceChildren();
  view.dataset.route = location.hash;
  if (route.kind === "pipeline") renderPipeline(view, route.id);
  else if (route.kind === "job") renderJob(view, route.id);
  else renderHome(view);
}

// -- health --------------------------------------------------------------------------------------

async function refreshHealth() {
  const pill = document.getElementById("health-pill");
  const detail = document.getElementById("health-detail");
  try {
    const response = await fetch("/readyz", { headers: { Accept: "application/json" } });
    const body = await response.json();
    pill.textContent = body.status;
    pill.className = "pill " + (response.ok ? "ok" : "bad");
    pill.title = body.failing && body.failing.length ? "failing: " + body.failing.join(", ") : "GET /readyz";
  } catch (err) {
    pill.textContent = "unreachable";
    pill.className = "pill bad";
  }
  try {
    const headers = { Accept: "application/json" };
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) headers.Authorization = "Bearer " + token;
    const response = await fetch("/health", { headers });
    const body = await response.json();
    detail.replaceChildren();
    detail.className = "small";
    const head = el("div", "", "status ", statusBadge(body.status));
    if (body.version) head.append(el("span", "muted", "  version " + body.version));
    detail.append(head);
    if (body.checks) {
      const facts = el("dl", "facts");
      for (const [name, check] of Object.entries(body.checks)) {
        facts.append(el("dt", "", name),
                     el("dd", "", statusBadge(check.ok ? "ok" : (check.required ? "down" : "degraded"))));
      }
      detail.append(facts);
    } else {
      detail.append(el("div", "muted", "enter a token for the detailed checks"));
    }
  } catch (err) {
    detail.textContent = "GET /health failed: " + err.message;
  }
}

// -- start ---------------------------------------------------------------------------------------

async function loadPipelines() {
  try {
    const { body } = await api("GET", "/pipelines");
    state.pipelines = body.pipelines;
    state.listError = null;
  } catch (err) {
    state.listError = (err.detail && err.detail.message) || err.message;
  }
  state.loaded = true;
  renderPipelineList();
  renderView();
}

function start() {
  document.getElementById("token-button").addEventListener("click", async () => {
    if (await askToken("Enter the token to send with every call.")) {
      loadPipelines();
      refreshHealth();
    }
  });
  window.addEventListener("hashchange", () => {
    renderPipelineList();
    renderJobList();
    renderView();
  });
  renderJobList();
  renderView();
  loadPipelines();
  refreshHealth();
  setInterval(pollJobs, POLL_MS);
  setInterval(refreshHealth, 10000);
  pollJobs();
}

start();
