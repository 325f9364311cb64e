// The JSON API with the token: every call of the dashboard goes through api(); a call refused with 401
// asks for a token once (however many calls were refused) and is sent again with it.

const TOKEN_KEY = "atoll.token";

export class ApiError extends Error {
  constructor(status, body) {
    const detail = body && body.error ? body.error : { name: `HTTP ${status}`, message: "" };
    super(detail.message || detail.name);
    this.status = status;
    this.detail = detail;
  }
}

/** Return the headers that carry the token kept in this tab's session storage (none when there is none). */
export function authHeaders() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  return token ? { Authorization: "Bearer " + token } : {};
}

let tokenPrompt = null;  // one prompt at a time, however many calls are refused
let declined = false;  // cancelled once: the polls stop asking until the Token button is used

/** Ask for a token in the dialog; resolve true when one was entered, false when cancelled. */
export function askToken(reason) {
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
export async function api(method, path, body, text) {
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

/** Return what the dashboard takes from the service's OpenAPI document rather than repeating it: the
 * job statuses ``GET /jobs`` filters by, and its page of jobs (the ``limit`` default and maximum). */
export async function readListing() {
  const { body: spec } = await api("GET", "/openapi.json");
  const resolve = (node) => {
    // a "#/components/..." reference, followed to what it names
    while (node && node.$ref) {
      node = node.$ref.replace(/^#\//, "").split("/")
        .reduce((at, key) => at[decodeURIComponent(key).replace(/~1/g, "/").replace(/~0/g, "~")], spec);
    }
    return node;
  };
  const parameters = resolve(spec.paths["/jobs"].get).parameters.map(resolve);
  const schemaOf = (name) => resolve(parameters.find((p) => p.name === name).schema);
  const limit = schemaOf("limit");
  return { statuses: schemaOf("status").enum, page: limit.default, max: limit.maximum };
}
