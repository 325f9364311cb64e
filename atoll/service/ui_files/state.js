// What the dashboard knows: one state object every view reads, the route of the page, and a job's facts.

export const state = {
  pipelines: [], loaded: false, listError: null,
  // from /openapi.json: the job statuses, and GET /jobs's page size and most jobs at once
  listing: { statuses: [], page: null, max: null },
  results: {},  // pipeline name -> the outcome of its try form
  // the jobs list: GET /jobs, newest first
  jobs: { items: [], next: null, error: null, loaded: false, status: "", pipeline: "" },
  records: {},  // job id -> the latest GET /jobs/<id>
  logs: {},  // job id -> {entries} or {error}, read once the job finished
  fullResults: {},  // job id -> {results} or {error}, read from results_url
  cancelErrors: {},  // job id -> the answer to a refused cancel
  rerunErrors: {},  // job id -> the answer to a refused re-run
};

/** Return the route of the page's hash: home, a pipeline or a job. */
export function parseRoute() {
  const hash = location.hash.replace(/^#\/?/, "");
  const [kind, ...rest] = hash.split("/");
  const id = rest.length ? decodeURIComponent(rest.join("/")) : null;
  if (kind === "pipelines" && id) return { kind: "pipeline", id };
  if (kind === "jobs" && id) return { kind: "job", id };
  return { kind: "home" };
}

/** True when the job has finished (succeeded, failed or was cancelled): its record says when. */
export function finished(job) {
  return Boolean(job && job.finished_at);
}

/** Return how long a job ran: finished - started, or the running time so far; null before it started. */
export function jobDuration(job) {
  const started = Date.parse(job.started_at || "");
  if (Number.isNaN(started)) return null;
  const ended = Date.parse(job.finished_at || "");
  return Math.max(0, (Number.isNaN(ended) ? Date.now() : ended) - started);
}
