// atoll dashboard: the page's start, its routes (#/, #/pipelines/<name>, #/jobs/<id>) and its poll.
// Modules: api.js (calls and the token), state.js (what is known), dom.js (pieces of the page),
// graph.js (pipelines drawn), pipelines.js, jobs.js (the list), job.js (one job), health.js.

import { api, askToken, readListing } from "./api.js";
import { refreshDatasets } from "./datasets.js";
import { refreshHealth } from "./health.js";
import { cancelJob, fetchJob, followed, jobStamp, renderJob } from "./job.js";
import { moreJobs, refreshJobs, renderJobFilters, renderJobList, restartJobs } from "./jobs.js";
import { renderHome, renderPipeline, renderPipelineList, showOutcome } from "./pipelines.js";
import { parseRoute, state } from "./state.js";

const POLL_MS = 2000;

/** Cancel a job from its page, then show what the service answered. */
async function cancel(id) {
  await cancelJob(id);
  renderJobList();
  renderView(true);
  refreshJobs();
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
    renderJob(view, route.id, cancel);
    view.dataset.stamp = jobStamp(route.id);
  } else renderHome(view);
}

let ticking = false;

/** Every POLL_MS while the page is visible: the list, and each job followed that has not finished. The
 * page is aria-busy while a poll is under way. */
async function tick() {
  if (ticking || document.visibilityState === "hidden") return;
  ticking = true;
  document.body.setAttribute("aria-busy", "true");
  try {
    const ids = followed();
    await Promise.all([refreshJobs(), refreshDatasets(), ...ids.map(fetchJob)]);
  } finally {
    ticking = false;
    document.body.removeAttribute("aria-busy");
  }
  renderJobList();  // with the records just read
  renderView();
}

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

/** Read the job statuses and page sizes from /openapi.json (once it answers). */
async function loadListing() {
  if (state.listing.statuses.length) return;
  try {
    state.listing = await readListing();
  } catch (err) {
    return;  // asked again when a token is entered; the list pages by the service's default meanwhile
  }
  renderJobFilters();
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
      loadListing();
      loadPipelines();
      refreshHealth();
      restartJobs();
    }
  });
  const status = document.getElementById("job-status");
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
  loadListing();
  loadPipelines();
  refreshHealth();
  const route = parseRoute();
  if (route.kind === "job") openJob(route.id);
  setInterval(tick, POLL_MS);
  setInterval(refreshHealth, 10000);
  tick();
}

start();
