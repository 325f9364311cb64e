// Small pieces of the page. Everything shown comes from the JSON API and is written with textContent
// (never innerHTML), so a name or a message holding markup is shown as text.

/** Return a new element with a class and children (strings become text nodes). */
export function el(tag, cls, ...children) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(typeof child === "string" ? document.createTextNode(child) : child);
  }
  return node;
}

/** Return a link to ``href`` showing ``text``. */
export function link(href, text, cls) {
  const a = el("a", cls, text);
  a.href = href;
  return a;
}

/** Return JSON text: on one line when short, a list one element a line, else indented. */
export function pretty(value) {
  const flat = JSON.stringify(value);
  if (flat === undefined || flat.length <= 100) return String(flat);
  if (Array.isArray(value)) {
    const lines = value.map((item) => JSON.stringify(item));
    if (lines.every((line) => line.length <= 120)) return "[\n  " + lines.join(",\n  ") + "\n]";
  }
  return JSON.stringify(value, null, 2);
}

/** Return a badge showing a status (of a job, a callback or a health check). */
export function statusBadge(status) {
  return el("span", "status status-" + String(status).replace(/[^a-z]/g, ""), String(status));
}

/** Return a duration in milliseconds as text: "12 ms", "1.50 s". */
export function seconds(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return "";
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(ms < 10000 ? 2 : 1)} s`;
}

/** Return a progress bar "done/total" for a running job that reports progress, else null. */
export function progressBar(job) {
  if (job.status !== "running" || !job.progress || !job.progress.total) return null;
  const bar = el("progress", "bar");
  bar.max = job.progress.total;
  bar.value = Math.min(job.progress.done, job.progress.total);
  const text = el("span", "progress-text", `${job.progress.done}/${job.progress.total}`);
  const wrap = el("div", "progress", bar, text);
  wrap.title = `${job.progress.done} of ${job.progress.total} chunks or partitions done`;
  return wrap;
}

/** Return a box showing an error's name, message, stage, item and traceback. */
export function errorBox(error, status) {
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
