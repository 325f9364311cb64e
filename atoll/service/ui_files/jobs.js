// The jobs list of the side bar: GET /jobs, newest first, filtered by status and pipeline, a page at a
// time ("more" follows the next cursor).

import { api } from "./api.js";
import { el, link, progressBar, seconds, statusBadge } from "./dom.js";
import { finished, jobDuration, parseRoute, state } from "./state.js";

/** Return a job as last known: the list's item, or the job's own record when that says it finished and
 * the list does not yet (a finished record never changes; the list may have been read before). */
function known(job) {
  const record = state.records[job.job_id];
  if (finished(record) && !finished(job)) return { ...job, ...record };
  return job;
}

/** Return the path of GET /jobs with the filters; without ``limit``, the service's own page size. */
function jobsQuery(limit, cursor) {
  const query = new URLSearchParams();
  if (limit) query.set("limit", String(limit));
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
export async function refreshJobs() {
  if (asking !== null) return;
  const jobs = state.jobs;
  const ticket = generation;
  const shown = jobs.items.length;
  const { page, max } = state.listing;  // unknown until /openapi.json was read
  const limit = page && shown > page ? Math.min(max, shown) : null;
  try {
    const { body } = await api("GET", jobsQuery(limit));
    if (ticket !== generation) return;
    // past the most GET /jobs answers at once, the tail "more" showed is kept as it was
    const asked = limit || page || body.jobs.length;
    const fresh = new Set(body.jobs.map((j) => j.job_id));
    const tail = shown > asked ? jobs.items.slice(asked).filter((j) => !fresh.has(j.job_id)) : [];
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
export async function moreJobs() {
  const jobs = state.jobs;
  if (!jobs.next || asking !== null) return;
  const ticket = asking = ++generation;
  try {
    const { body } = await api("GET", jobsQuery(null, jobs.next));
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
export function restartJobs() {
  generation += 1;
  asking = null;
  state.jobs.items = [];
  state.jobs.next = null;
  state.jobs.loaded = false;
  renderJobList();
  refreshJobs();
}

export function renderJobList() {
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

/** Return options of a filter: "all ..." first, then one per name, the chosen one kept. */
function fillSelect(select, all, names, chosen) {
  const options = [el("option", "", all)];
  options[0].value = "";
  for (const name of chosen && !names.includes(chosen) ? [...names, chosen] : names) {
    const option = el("option", "", name);
    option.value = name;
    options.push(option);
  }
  select.replaceChildren(...options);
  select.value = chosen;
}

/** Fill the filters with the job statuses (from /openapi.json) and the registered pipelines. */
export function renderJobFilters() {
  fillSelect(document.getElementById("job-status"), "all statuses", state.listing.statuses,
             state.jobs.status);
  fillSelect(document.getElementById("job-pipeline"), "all pipelines", state.pipelines.map((p) => p.name),
             state.jobs.pipeline);
}
