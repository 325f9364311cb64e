// The service's health in the header (GET /readyz, open to all) and the side bar (GET /health, its
// checks shown with a token).

import { authHeaders } from "./api.js";
import { el, statusBadge } from "./dom.js";

export async function refreshHealth() {
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
    const response = await fetch("/health", { headers: { Accept: "application/json", ...authHeaders() } });
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
