// The explorer API (/api, see explorer/api.py): bearer token, JSON calls, errors, downloads.

const TOKEN_KEY = "profiles.token";

export const token = {
  get: () => sessionStorage.getItem(TOKEN_KEY),
  set: (value) => sessionStorage.setItem(TOKEN_KEY, value),
  clear: () => sessionStorage.removeItem(TOKEN_KEY),
};

/** An answer other than 2xx; `message` is the API's {"error": ...} line when it sent one. */
export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

const enc = encodeURIComponent;

/** URL paths of the API; every id is escaped as one path segment. */
export const paths = {
  apps: () => "/api/apps",
  users: (app) => `/api/apps/${enc(app)}/users`,
  user: (app, user) => `/api/apps/${enc(app)}/users/${enc(user)}`,
  companies: (app) => `/api/apps/${enc(app)}/companies`,
  company: (app, company) => `/api/apps/${enc(app)}/companies/${enc(company)}`,
  segments: (app) => `/api/apps/${enc(app)}/segments`,
};

function url(path, params) {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(params || {})) {
    if (value !== null && value !== undefined && value !== "") query.set(key, String(value));
  }
  const qs = query.toString();
  return qs ? `${path}?${qs}` : path;
}

async function send(path, params, init) {
  const headers = { Accept: "application/json", ...(init.headers || {}) };
  const bearer = token.get();
  if (bearer) headers.Authorization = `Bearer ${bearer}`;
  let response;
  try {
    response = await fetch(url(path, params), { ...init, headers });
  } catch (exc) {
    throw new ApiError(0, `cannot reach the API: ${exc.message}`);
  }
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`.trim();
    try {
      const body = await response.json();
      if (body && typeof body.error === "string") message = body.error;
    } catch {
      // not JSON: keep the status line
    }
    throw new ApiError(response.status, message);
  }
  return response;
}

/** GET a JSON resource. */
export async function get(path, params) {
  return (await send(path, params, { method: "GET" })).json();
}

/** POST a JSON body, return the JSON answer. */
export async function post(path, body) {
  const init = {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  };
  return (await send(path, null, init)).json();
}

/** Fetch a file with the token and hand it to the browser as a download. */
export async function download(path, params, fallbackName) {
  const response = await send(path, params, { method: "GET", headers: { Accept: "*/*" } });
  const disposition = response.headers.get("Content-Disposition") || "";
  const star = /filename\*=UTF-8''([^;]+)/i.exec(disposition);
  const plain = /filename="?([^";]+)"?/i.exec(disposition);
  let name = fallbackName;
  if (star) name = decodeURIComponent(star[1]);
  else if (plain) name = plain[1];
  const blob = await response.blob();
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob);
  link.download = name;
  document.body.appendChild(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 10_000);
  return name;
}
