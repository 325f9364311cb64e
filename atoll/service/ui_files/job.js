// One job: GET /jobs/<id> while it is followed, its output and results once it finished, its page, and
// cancelling it (DELETE /jobs/<id>).

import { api } from "./api.js";
import { el, errorBox, link, pretty, progressBar, seconds, statusBadge } from "./dom.js";
import { finished, jobDuration, parseRoute, state } from "./state.js";

/** Read GET /jobs/<id> into state.records; once the job finished, read its output and its results
 * kept aside (results_url) too, once. */
export async function fetchJob(id) {
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
  if (!finished(record)) return;
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
export async function cancelJob(id) {
  delete state.cancelErrors[id];
  try {
    const { body } = await api("DELETE", "/jobs/" + encodeURIComponent(id));
    state.records[id] = body;
  } catch (err) {
    const error = err.detail || { name: "Error", message: err.message };
    state.cancelErrors[id] = { status: err.status, error };
    await fetchJob(id);
  }
}

/** Re-run a finished job (POST /jobs/<id>/rerun); return the new job's id, or null when refused
 * (the answer is shown on the old job's page). */
export async function rerunJob(id) {
  delete state.rerunErrors[id];
  try {
    const { body } = await api("POST", "/jobs/" + encodeURIComponent(id) + "/rerun");
    return body.job_id;
  } catch (err) {
    state.rerunErrors[id] = { status: err.status, error: err.detail || { name: "Error", message: err.message } };
    await fetchJob(id);
    return null;
  }
}

/** The ids of the jobs the page follows: the job shown (until its callback was delivered or given up
 * too), and jobs started from a try form. */
export function followed() {
  const route = parseRoute();
  const shown = route.kind === "job" ? route.id : null;
  const ids = new Set(shown ? [shown] : []);
  for (const outcome of Object.values(state.results)) if (outcome.job) ids.add(outcome.job);
  return [...ids].filter((id) => {
    const record = state.records[id];
    if (!finished(record)) return true;
    if (record.missing) return false;
    return !state.logs[id] || logsMayArrive(record) ||
      (id === shown && record.callback && record.callback.state === "pending");
  });
}

/** Return what a finished job gave: the error of a failed one, the results of a succeeded one (read
 * from results_url when they were kept aside). */
export function jobOutcome(record) {
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
function logList(record) {
  const logs = state.logs[record.job_id];
  if (!finished(record)) return el("p", "muted small", "shown once the job has finished");
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

/** Return the first dead letters a job's record carries (on_error collect): stage, error, element. */
function deadLetters(record) {
  const dropped = record.element_errors;
  const section = el("section", "dead-letters");
  section.id = "job-dead-letters";
  section.append(el("h3", "", "Dead letters"));
  const list = el("ol", "logs");
  for (const letter of dropped.sample) {
    const stage = letter.stage || {};
    const element = letter.element_repr ? String(letter.element) : JSON.stringify(letter.element);
    list.append(el("li", "dead-letter",
                   el("span", "log-tag", `stage ${stage.path} ${stage.operator}(${stage.function})`),
                   el("span", "log-message", `${letter.error}: ${letter.message} on `),
                   el("code", "mono small", element)));
  }
  section.append(list);
  if (dropped.skipped > dropped.sample.length) {
    section.append(el("p", "muted small", `the first ${dropped.sample.length} of ${dropped.skipped}; ` +
                                           "all kept ones: GET /jobs/" + record.job_id + "/errors"));
  }
  return section;
}

/** Draw the page of job ``id`` into ``view``; its Cancel button calls ``cancel(id)``, its Re-run
 * button (on a finished job) ``rerun(id)``. */
export function renderJob(view, id, cancel, rerun) {
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
  if (record.attempts > 1 || (record.attempt_errors && record.attempt_errors.length)) {
    const dd = el("dd", "attempts", el("span", "", String(record.attempts)));
    (record.attempt_errors || []).forEach((error, index) => {
      dd.append(el("div", "small muted", `attempt ${index + 1}: ${error.name}: ${error.message}`));
    });
    facts.append(el("dt", "", "attempts"), dd);
  }
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
  if (record.rerun_of) {
    facts.append(el("dt", "", "re-run of"),
                 el("dd", "", link("#/jobs/" + encodeURIComponent(record.rerun_of), record.rerun_of, "mono small")));
  }
  if (record.element_errors) {
    const dropped = record.element_errors;
    const dd = el("dd", "element-errors", el("span", "", String(dropped.skipped)));
    for (const [stage, count] of Object.entries(dropped.by_stage || {})) {
      dd.append(el("span", "small muted", ` stage ${stage}: ${count}`));
    }
    facts.append(el("dt", "", "elements dropped"), dd);
  }
  view.append(facts);
  if (record.element_errors && (record.element_errors.sample || []).length) {
    view.append(deadLetters(record));
  }
  if (!finished(record)) {
    const button = el("button", "danger", "Cancel");
    button.type = "button";
    button.id = "job-cancel";
    button.addEventListener("click", () => {
      button.disabled = true;
      cancel(id);
    });
    view.append(el("div", "form-row", button));
  } else if (!record.missing) {
    const button = el("button", "", "Re-run");
    button.type = "button";
    button.id = "job-rerun";
    button.title = "a new job with the same data, kwargs and callback";
    button.addEventListener("click", () => {
      button.disabled = true;
      rerun(id);
    });
    view.append(el("div", "form-row", button));
  }
  const refused = state.cancelErrors[id];
  if (refused) {
    const note = errorBox(refused.error, refused.status);
    note.id = "cancel-error";
    view.append(note);
  }
  const notRerun = state.rerunErrors[id];
  if (notRerun) {
    const note = errorBox(notRerun.error, notRerun.status);
    note.id = "rerun-error";
    view.append(note);
  }
  if (record.problem) view.append(el("p", "muted", "Last poll: " + record.problem));
  view.append(jobOutcome(record));
  const output = el("section", "output");
  output.id = "job-output";
  output.append(el("h3", "", "Output"), logList(record));
  view.append(output);
}

/** Return text that changes when anything a job's page shows changes (the running time by the second). */
export function jobStamp(id) {
  const record = state.records[id] || {};
  const running = record.status === "running" ? Math.floor((jobDuration(record) || 0) / 1000) : 0;
  return JSON.stringify([record, state.logs[id], state.fullResults[id], state.cancelErrors[id],
                         state.rerunErrors[id], running]);
}
