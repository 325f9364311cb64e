// atoll dashboard. Everything shown comes from the JSON API and is written with textContent (never
// innerHTML), so a name or a message holding markup is shown as text.
"use strict";

const TOKEN_KEY = "atoll.token";
const STATUSES = ["queued", "running", "succeeded", "failed", "cancelled"];
const FINAL = new Set(["succeeded", "failed", "cancelled"]);
const POLL_MS = 2000;
const PAGE = 50;  // jobs asked for per page of GET /jobs
const LIMIT_MAX = 500;  // the most GET /jobs answers at once

const state = {
  pipelines: [], loaded: false, listError: null,
  results: {},  // pipeline name -> the outcome of its try form
  // the jobs list: GET /jobs, newest first
  jobs: { items: [], next: null, error: null, loaded: false, status: "", pipeline: "" },
  records: {},  // job id -> the latest GET /jobs/<id>
  logs: {},  // job id -> {entries} or {error}, read once the job finished
  fullResults: {},  // job id -> {results} or {error}, read from results_url
  cancelErrors: {},  // job id -> the answer to a refused cancel
};

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

/** Call the API; on 401 ask for a token and try again. Return the status and the parsed JSON body
 * (with ``text``, the body as text: for answers that are not one JSON document). */
async function api(method, path, body, text) {
  for (;;) {
    const headers = { Accept: text ? "*/*" : "application/json" };
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) headers.Authorization = "Bearer " + token;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(path, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body),
    });
    const raw = await response.text();
    let parsed = null;
    try { parsed = JSON.parse(raw); } catch (_) { parsed = null; }
    if (response.status === 401) {
      // sent before a token was entered (while the dialog was open): try again with that one
      if (sessionStorage.getItem(TOKEN_KEY) !== token) continue;
      const reason = parsed && parsed.error ? parsed.error.message : "The service refused the call.";
      if (!declined && await askToken(reason)) continue;
    }
    if (!response.ok) throw new ApiError(response.status, parsed);
    return { status: response.status, body: text ? raw : parsed };
  }
}

// -- jobs: GET /jobs for the list, GET /jobs/<id> for a job followed --------------------------------

/** Return how long a job ran: finished - started, or the running time so far; null before it started. */
function jobDuration(job) {
  const started = Date.parse(job.started_at || "");
  if (Number.isNaN(started)) return null;
  const finished = Date.parse(job.finished_at || "");
  return Math.max(0, (Number.isNaN(finished) ? Date.now() : finished) - started);
}

/** Return a job as last known: the list's item, or the job's own record when that says it finished and
 * the list does not yet (a finished record never changes; the list may have been read before). */
function known(job) {
  const record = state.records[job.job_id];
  if (record && FINAL.has(record.status) && !FINAL.has(job.status)) return { ...job, ...record };
  return job;
}

/** Return a progress bar "done/total" for a running job that reports progress, else null. */
function progressBar(job) {
  if (job.status !== "running" || !job.progress || !job.progress.total) return null;
  const bar = el("progress", "bar");
  bar.max = job.progress.total;
  bar.value = Math.min(job.progress.done, job.progress.total);
  const text = el("span", "progress-text", `${job.progress.done}/${job.progress.total}`);
  const wrap = el("div", "progress", bar, text);
  wrap.title = `${job.progress.done} of ${job.progress.total} chunks or partitions done`;
  return wrap;
}

function jobsQuery(limit, cursor) {
  const query = new URLSearchParams({ limit: String(limit) });
  if (state.jobs.status) query.set("status", state.jobs.status);
  if (state.jobs.pipeline) query.set("pipeline", state.jobs.pipeline);
  if (cursor) query.set("cursor", cursor);
  return "/jobs?" + query.toString();
}

// the list's generation: a new one starts when the filters change or "more" is asked for, and an answer
// to a listing asked for in an earlier generation is dropped (it would undo what came after)
let generation = 0;
let asking = null;  // the generation of a "more" not answered yet: the refresh waits for it

/** Ask GET /jobs again for the jobs shown (the first page, or as many as "more" showed). */
async function refreshJobs() {
  if (asking !== null) return;
  const jobs = state.jobs;
  const ticket = generation;
  const shown = jobs.items.length;
  const limit = Math.min(LIMIT_MAX, Math.max(PAGE, shown));
  try {
    const { body } = await api("GET", jobsQuery(limit));
    if (ticket !== generation) return;
    // past LIMIT_MAX the tail "more" showed is kept as it was
    const fresh = new Set(body.jobs.map((j) => j.job_id));
    const tail = shown > limit ? jobs.items.slice(limit).filter((j) => !fresh.has(j.job_id)) : [];
    jobs.items = body.jobs.concat(tail);
    if (!tail.length) jobs.next = body.next;
    jobs.error = null;
  } catch (err) {
    if (ticket !== generation) return;
    jobs.error = err.message;
  }
  jobs.loaded = true;
  renderJobList();
}

/** Append the next page of GET /jobs (the "more" button). */
async function moreJobs() {
  const jobs = state.jobs;
  if (!jobs.next || asking !== null) return;
  const ticket = asking = ++generation;
  try {
    const { body } = await api("GET", jobsQuery(PAGE, jobs.next));
    if (ticket !== generation) return;
    const seen = new Set(jobs.items.map((j) => j.job_id));
    jobs.items = jobs.items.concat(body.jobs.filter((j) => !seen.has(j.job_id)));
    jobs.next = body.next;
    jobs.error = null;
  } catch (err) {
    if (ticket !== generation) return;
    jobs.error = err.message;
  } finally {
    if (asking === ticket) asking = null;
  }
  renderJobList();
}

/** Show the list from the first page again (the filters changed). */
function restartJobs() {
  generation += 1;
  asking = null;
  state.jobs.items = [];
  state.jobs.next = null;
  state.jobs.loaded = false;
  renderJobList();
  refreshJobs();
}

/** Read GET /jobs/<id> into state.records; once the job finished, read its output and its results
 * kept aside (results_url) too, once. */
async function fetchJob(id) {
  const path = "/jobs/" + encodeURIComponent(id);
  try {
    const { body } = await api("GET", path);
    state.records[id] = body;
  } catch (err) {
    const old = state.records[id] || { job_id: id };
    state.records[id] = { ...old, problem: err.message, missing: err.status === 404 };
    return;
  }
  const record = state.records[id];
  if (!FINAL.has(record.status)) return;
  if (!state.logs[id] || logsMayArrive(record)) {
    try {
      const { body } = await api("GET", path + "/logs", undefined, true);
      state.logs[id] = { entries: parseLogs(body) };
    } catch (err) {
      state.logs[id] = { error: err.message };
    }
  }
  if (record.results_url && !state.fullResults[id]) {
    try {
      const { body } = await api("GET", new URL(record.results_url, location.href).pathname);
      state.fullResults[id] = { results: body.results };
    } catch (err) {
      state.fullResults[id] = { error: err.message };
    }
  }
}

/** True while a cancelled job's output may still be stored: the record says cancelled at once, the
 * worker stores what the run printed once the run has stopped (a few seconds at most). */
function logsMayArrive(record) {
  const logs = state.logs[record.job_id];
  const empty = !logs || (logs.entries && !logs.entries.length);
  const age = Date.now() - Date.parse(record.finished_at || "");
  return record.status === "cancelled" && empty && age < 15000;
}

/** Return the entries of a JSON-lines log (a line that is not JSON is kept as a message). */
function parseLogs(text) {
  const entries = [];
  for (const line of String(text || "").split("\n")) {
    if (!line.trim()) continue;
    try {
      const entry = JSON.parse(line);
      entries.push(entry && typeof entry === "object" ? entry : { message: String(entry) });
    } catch (_) {
      entries.push({ message: line });
    }
  }
  return entries;
}

/** Cancel a job (DELETE /jobs/<id>); a job that finished meanwhile answers 409, shown on its page. */
async function cancelJob(id) {
  delete state.cancelErrors[id];
  try {
    const { body } = await api("DELETE", "/jobs/" + encodeURIComponent(id));
    state.records[id] = body;
  } catch (err) {
    const error = err.detail || { name: "Error", message: err.message };
    state.cancelErrors[id] = { status: err.status, error };
    await fetchJob(id);
  }
  renderJobList();
  renderView(true);
  refreshJobs();
}

/** The ids of the jobs the page follows: the job shown (until its callback was delivered or given up
 * too), and jobs started from a try form. */
function followed() {
  const route = parseRoute();
  const shown = route.kind === "job" ? route.id : null;
  const ids = new Set(shown ? [shown] : []);
  for (const outcome of Object.values(state.results)) if (outcome.job) ids.add(outcome.job);
  return [...ids].filter((id) => {
    const record = state.records[id];
    if (!record || !FINAL.has(record.status)) return true;
    if (record.missing) return false;
    return !state.logs[id] || logsMayArrive(record) ||
      (id === shown && record.callback && record.callback.state === "pending");
  });
}

let ticking = false;

/** Every POLL_MS while the page is visible: the list, and each job followed that has not finished. */
async function tick() {
  if (ticking || document.visibilityState === "hidden") return;
  ticking = true;
  try {
    const ids = followed();
    await Promise.all([refreshJobs(), ...ids.map(fetchJob)]);
  } finally {
    ticking = false;
  }
  renderJobList();  // with the records just read
  renderView();
}

function renderJobList() {
  const list = document.getElementById("job-list");
  const jobs = state.jobs;
  const route = parseRoute();
  list.replaceChildren();
  if (jobs.error) list.append(el("li", "muted", "could not list: " + jobs.error));
  if (!jobs.items.length && !jobs.error) {
    const filtered = jobs.status || jobs.pipeline;
    list.append(el("li", "muted", !jobs.loaded ? "loading…" : (filtered ? "no job matches" : "none yet")));
  }
  for (const item of jobs.items) {
    const job = known(item);
    const entry = el("li", route.kind === "job" && route.id === job.job_id ? "current" : "");
    const a = link("#/jobs/" + encodeURIComponent(job.job_id), "");
    a.title = `${job.job_id}\nsubmitted ${job.submitted_at || "?"}`;
    const duration = jobDuration(job);
    a.append(el("div", "mono small", String(job.pipeline)),
             el("div", "meta", statusBadge(job.status), progressBar(job),
                el("span", "duration", duration === null ? "" : seconds(duration))));
    entry.append(a);
    list.append(entry);
  }
  document.getElementById("job-more").hidden = !jobs.next;
}

/** Fill the pipeline filter with the registered pipelines (keeping the one chosen). */
function renderJobFilters() {
  const select = document.getElementById("job-pipeline");
  const names = state.pipelines.map((p) => p.name);
  if (state.jobs.pipeline && !names.includes(state.jobs.pipeline)) names.push(state.jobs.pipeline);
  const options = [el("option", "", "all pipelines")];
  options[0].value = "";
  for (const name of names) {
    const option = el("option", "", name);
    option.value = name;
    options.push(option);
  }
  select.replaceChildren(...options);
  select.value = state.jobs.pipeline;
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
        outcome.job = answer.job_id;
        await Promise.all([fetchJob(answer.job_id), refreshJobs()]);
        renderJobList();
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
    const record = state.records[outcome.job] || { job_id: outcome.job, status: "queued" };
    const line = el("p", "job-line", "Job ", link("#/jobs/" + encodeURIComponent(outcome.job), outcome.job, "mono"),
                    " ", statusBadge(record.status), " ", progressBar(record));
    line.id = "try-job";
    out.append(line, jobOutcome(record));
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

/** Return what a finished job gave: the error of a failed one, the results of a succeeded one (read
 * from results_url when they were kept aside). */
function jobOutcome(record) {
  const wrap = el("div", "");
  if (record.status === "failed" && record.error) wrap.append(errorBox(record.error));
  if (record.status === "succeeded") {
    wrap.append(el("div", "small muted", record.results_url ? "results (from results_url)" : "results"));
    if (!record.results_url) {
      wrap.append(el("pre", "results", pretty(record.results)));
    } else {
      const kept = state.fullResults[record.job_id];
      if (!kept) wrap.append(el("p", "muted", "loading…"));
      else if ("error" in kept) wrap.append(el("p", "muted", "could not read them: " + kept.error));
      else wrap.append(el("pre", "results", pretty(kept.results)));
    }
  }
  return wrap;
}

/** Return the job's output (GET /jobs/<id>/logs) as a list: time, stream or level, message. */
function logList(id, status) {
  const logs = state.logs[id];
  if (!FINAL.has(status)) return el("p", "muted small", "shown once the job has finished");
  if (!logs) return el("p", "muted small", "loading…");
  if (logs.error) return el("p", "muted small", "could not read it: " + logs.error);
  if (!logs.entries.length) return el("p", "muted small", "the pipeline printed and logged nothing");
  const list = el("ol", "logs");
  for (const entry of logs.entries) {
    const time = String(entry.time || "");
    const when = el("span", "log-time", time.length >= 23 ? time.slice(11, 23) : time);
    when.title = time;
    const tag = entry.stream === "log" && entry.level ? entry.level : String(entry.stream || "");
    const kind = String(entry.stream || "").replace(/[^a-z]/g, "");
    const level = String(entry.level || "").toLowerCase().replace(/[^a-z]/g, "");
    const logger = entry.logger ? el("span", "log-logger", entry.logger + ": ") : null;
    const line = el("li", "log-" + kind + (level ? " level-" + level : ""), when, el("span", "log-tag", tag),
                    el("span", "log-message", logger, String(entry.message === undefined ? "" : entry.message)));
    list.append(line);
  }
  return list;
}

function renderJob(view, id) {
  const record = state.records[id];
  view.append(el("h1", "", "Job"), el("p", "mono small", id));
  if (!record || (!record.status && !record.problem)) {
    view.append(el("p", "muted", "loading…"));
    return;
  }
  if (!record.status) {
    view.append(errorBox({ name: record.missing ? "UnknownJob" : "Error", message: record.problem }));
    return;
  }
  const facts = el("dl", "facts");
  const duration = jobDuration(record);
  const pipeline = String(record.pipeline);
  facts.append(el("dt", "", "pipeline"),
               el("dd", "", link("#/pipelines/" + encodeURIComponent(pipeline), pipeline, "mono")),
               el("dt", "", "status"), el("dd", "job-status", statusBadge(record.status)));
  const bar = progressBar(record);
  if (bar) facts.append(el("dt", "", "progress"), el("dd", "", bar));
  facts.append(el("dt", "", record.status === "running" ? "running for" : "duration"),
               el("dd", "", duration === null ? "not started" : seconds(duration)));
  for (const key of ["submitted_at", "started_at", "finished_at"]) {
    if (record[key]) facts.append(el("dt", "", key.replace("_at", "")), el("dd", "mono small", record[key]));
  }
  if (record.callback) {
    const cb = record.callback;
    const dd = el("dd", "callback", statusBadge(cb.state),
                  el("span", "small", ` ${cb.attempts} attempt${cb.attempts === 1 ? "" : "s"} `),
                  el("span", "mono small", cb.url));
    if (cb.last_error) dd.append(el("div", "small muted", "last error: " + cb.last_error));
    facts.append(el("dt", "", "callback"), dd);
  }
  if (record.request_id) facts.append(el("dt", "", "request id"), el("dd", "mono small", record.request_id));
  view.append(facts);
  if (!FINAL.has(record.status)) {
    const cancel = el("button", "danger", "Cancel");
    cancel.type = "button";
    cancel.id = "job-cancel";
    cancel.addEventListener("click", () => {
      cancel.disabled = true;
      cancelJob(id);
    });
    view.append(el("div", "form-row", cancel));
  }
  const refused = state.cancelErrors[id];
  if (refused) {
    const note = errorBox(refused.error, refused.status);
    note.id = "cancel-error";
    view.append(note);
  }
  if (record.problem) view.append(el("p", "muted", "Last poll: " + record.problem));
  view.append(jobOutcome(record));
  const output = el("section", "output");
  output.id = "job-output";
  output.append(el("h3", "", "Output"), logList(id, record.status));
  view.append(output);
}

/** Return text that changes when anything a job's page shows changes (the running time by the second). */
function jobStamp(id) {
  const record = state.records[id] || {};
  const running = record.status === "running" ? Math.floor((jobDuration(record) || 0) / 1000) : 0;
  return JSON.stringify([record, state.logs[id], state.fullResults[id], state.cancelErrors[id], running]);
}

/** Draw the view of the route; unless ``force``, a view that shows the same thing is left alone (a
 * form being filled in keeps its text, a page its scroll and selection). */
function renderView(force) {
  const view = document.getElementById("view");
  const route = parseRoute();
  // keep a form being filled in: only the job line and outcome below it change while polling
  const out = document.getElementById("try-output");
  if (route.kind === "pipeline" && out && view.dataset.route === location.hash && !force) {
    showOutcome(out, state.results[route.id]);
    return;
  }
  if (route.kind === "job" && view.dataset.route === location.hash && !force) {
    if (view.dataset.stamp === jobStamp(route.id)) return;
  }
  view.replaceChildren();
  view.dataset.route = location.hash;
  delete view.dataset.stamp;
  if (route.kind === "pipeline") renderPipeline(view, route.id);
  else if (route.kind === "job") {
    renderJob(view, route.id);
    view.dataset.stamp = jobStamp(route.id);
  } else renderHome(view);
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
  renderJobFilters();
  renderView();
}

/** Show a job's page: read the job now rather than at the next tick. */
async function openJob(id) {
  if (!state.records[id]) renderView();
  await fetchJob(id);
  renderView();
}

function start() {
  document.getElementById("token-button").addEventListener("click", async () => {
    if (await askToken("Enter the token to send with every call.")) {
      loadPipelines();
      refreshHealth();
      restartJobs();
    }
  });
  const status = document.getElementById("job-status");
  for (const name of STATUSES) {
    const option = el("option", "", name);
    option.value = name;
    status.append(option);
  }
  status.addEventListener("change", () => {
    state.jobs.status = status.value;
    restartJobs();
  });
  const pipeline = document.getElementById("job-pipeline");
  pipeline.addEventListener("change", () => {
    state.jobs.pipeline = pipeline.value;
    restartJobs();
  });
  document.getElementById("job-more").addEventListener("click", moreJobs);
  window.addEventListener("hashchange", () => {
    renderPipelineList();
    renderJobList();
    renderView();
    const route = parseRoute();
    if (route.kind === "job") openJob(route.id);
  });
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible") tick();
  });
  renderJobFilters();
  renderJobList();
  renderView();
  loadPipelines();
  refreshHealth();
  const route = parseRoute();
  if (route.kind === "job") openJob(route.id);
  setInterval(tick, POLL_MS);
  setInterval(refreshHealth, 10000);
  tick();
}

start();
