// The datasets list of the side bar: GET /datasets, newest first, with each dataset's size, records and
// expiry, and links to the jobs that read it and the job whose results it holds.

import { api } from "./api.js";
import { el, link } from "./dom.js";

const shown = { items: [], error: null, loaded: false };

/** Return a byte count as text: "812 B", "1.5 MB". */
export function size(bytes) {
  const units = ["B", "kB", "MB", "GB", "TB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit += 1;
  }
  return unit ? `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}` : `${bytes} B`;
}

function jobLink(id) {
  return link("#/jobs/" + encodeURIComponent(id), id.slice(0, 8), "mono job-link");
}

/** Ask GET /datasets again and redraw the list. */
export async function refreshDatasets() {
  try {
    const { body } = await api("GET", "/datasets?limit=20");
    shown.items = body.datasets;
    shown.error = null;
  } catch (err) {
    shown.error = err.message;
  }
  shown.loaded = true;
  renderDatasets();
}

/** Draw the datasets list from what was last read. */
export function renderDatasets() {
  const list = document.getElementById("dataset-list");
  if (!list) return;
  if (shown.error) {
    list.replaceChildren(el("li", "error", shown.error));
    return;
  }
  if (!shown.items.length) {
    list.replaceChildren(el("li", "muted", shown.loaded ? "no datasets" : "loading…"));
    return;
  }
  list.replaceChildren(...shown.items.map((d) => {
    const item = el("li", "dataset");
    item.dataset.id = d.dataset_id;
    const title = el("a", "mono dataset-name", d.name || d.dataset_id.slice(0, 12));
    title.href = "/datasets/" + encodeURIComponent(d.dataset_id) + "/data";
    title.title = d.dataset_id;
    const facts = el("div", "small muted dataset-facts",
      `${d.format} · ${d.records} records · ${size(d.bytes)} · expires ${new Date(d.expires_at).toLocaleString()}`);
    item.append(title, facts);
    if (d.job_id) item.append(el("div", "small dataset-writer", "results of ", jobLink(d.job_id)));
    if (d.jobs && d.jobs.length) {
      const readers = el("div", "small dataset-readers", "read by ");
      d.jobs.slice(0, 5).forEach((id, i) => {
        if (i) readers.append(" ");
        readers.append(jobLink(id));
      });
      item.append(readers);
    }
    return item;
  }));
}
