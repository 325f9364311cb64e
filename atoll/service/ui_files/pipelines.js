// The registered pipelines: the side bar's list, the home page of graphs, and a pipeline's page with
// its try-it form (a synchronous call, or a job followed below the form).

import { api } from "./api.js";
import { el, errorBox, link, pretty, progressBar, statusBadge } from "./dom.js";
import { drawSequence } from "./graph.js";
import { fetchJob, jobOutcome } from "./job.js";
import { refreshJobs, renderJobList } from "./jobs.js";
import { parseRoute, state } from "./state.js";

export function renderPipelineList() {
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

export function renderHome(view) {
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

export function renderPipeline(view, name) {
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

/** Show the outcome of a try form in ``out``: running, its error, its results or the job it started. */
export function showOutcome(out, outcome) {
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
