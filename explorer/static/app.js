// The profiles explorer: sign-in, app picker and hash routing to the list and profile views.
//
//   #/apps/APP/users[?q=&sort=]            users list     (lists.js)
//   #/apps/APP/users/USER?tab=&period=     user profile   (profiles.js, tabs in panels.js)
//   #/apps/APP/companies[?q=&sort=]        companies list (lists.js)
//   #/apps/APP/companies/CO?tab=&period=   company profile (profiles.js)

import { ApiError, get, paths, token } from "./api.js";
import { empty, h } from "./dom.js";
import { companiesList, usersList } from "./lists.js";
import { companyProfile, userProfile } from "./profiles.js";
import { clearError, clearNotice, href, showError } from "./ui.js";

let apps = [];
let current = null; // {key, view}: the view shown, reused while only its query changes
let signedIn = false;

const $ = (id) => document.getElementById(id);

function parse(hash) {
  const raw = hash.replace(/^#/, "");
  const cut = raw.indexOf("?");
  const path = cut < 0 ? raw : raw.slice(0, cut);
  const query = new URLSearchParams(cut < 0 ? "" : raw.slice(cut + 1));
  let parts = null;
  try {
    parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  } catch {
    // a malformed escape: not a route
  }
  return { path, parts, query };
}

function show(view, key) {
  if (current && current.view.dispose) current.view.dispose();
  clearNotice(1500);
  current = { key, view };
  $("view").replaceChildren(view.el);
}

/** Marks the app and section in the header band and the left nav. */
function chrome(app, kind) {
  const picker = $("app-select");
  if (app && ![...picker.options].some((o) => o.value === app)) {
    picker.appendChild(h("option", { value: app }, app));
  }
  picker.value = app || "";
  const nav = { users: $("nav-users"), companies: $("nav-companies") };
  for (const [name, link] of Object.entries(nav)) {
    link.classList.toggle("active", name === kind);
    if (app) link.setAttribute("href", href[name](app));
  }
}

function context(app, path) {
  return {
    app,
    /** Shows an API error; a refused token goes back to the sign-in form. */
    fail(exc) {
      if (exc instanceof ApiError && exc.status === 401) {
        token.clear();
        signIn(`The token was refused: ${exc.message}`);
        return;
      }
      showError(exc instanceof ApiError ? exc.message : `unexpected error: ${exc}`);
      console.error(exc);
    },
    go(hash) {
      location.hash = hash;
    },
    /** The same page with another query, without a new history entry. */
    replace(query) {
      const qs = query.toString();
      location.replace(`#${path}${qs ? `?${qs}` : ""}`);
    },
    /** The list view changed its own URL (history.replaceState): keep it as the current one. */
    rekey() {
      if (current) current.key = location.hash;
    },
  };
}

function route() {
  clearError();
  const { path, parts, query } = parse(location.hash);
  if (parts && parts.length === 0) {
    if (apps.length) location.replace(href.users(apps[0]));
    else show({ el: empty("This token may read no app yet.") }, location.hash);
    return;
  }
  const ok =
    parts &&
    parts[0] === "apps" &&
    (parts.length === 3 || parts.length === 4) &&
    (parts[2] === "users" || parts[2] === "companies");
  if (!ok) {
    chrome(null, null);
    show({ el: empty("No such page.") }, location.hash);
    showError(`no such page: ${location.hash}`);
    return;
  }
  const [, app, kind, id] = parts;
  chrome(app, kind);
  const key = id === undefined ? location.hash : JSON.stringify([app, kind, id]);
  if (current && current.key === key) {
    if (current.view.update) current.view.update(query);
    return;
  }
  const ctx = context(app, path);
  let view;
  if (id === undefined) {
    view = kind === "users" ? usersList(ctx, app, query) : companiesList(ctx, app, query);
  } else {
    view = kind === "users" ? userProfile(ctx, app, id) : companyProfile(ctx, app, id);
  }
  show(view, key);
  if (view.update) view.update(query);
  window.scrollTo(0, 0);
}

function signIn(message) {
  if (current && current.view.dispose) current.view.dispose();
  current = null;
  signedIn = false;
  document.body.classList.add("signed-out");
  const input = h("input", {
    class: "input",
    type: "password",
    autocomplete: "off",
    placeholder: "API token",
    testid: "token-input",
    "aria-label": "API token",
  });
  const form = h(
    "form",
    {
      class: "card signin",
      testid: "signin-form",
      onsubmit: (event) => {
        event.preventDefault();
        if (!input.value.trim()) return;
        token.set(input.value.trim());
        boot();
      },
    },
    h("h1", {}, "Profiles explorer"),
    h("p", { class: "muted" }, "Sign in with an API token (PROFILES_API_TOKENS)."),
    message ? h("p", { class: "field-error", testid: "signin-error" }, message) : null,
    input,
    h("button", { class: "btn btn-primary", type: "submit", testid: "token-submit" }, "Sign in"),
  );
  $("view").replaceChildren(form);
  input.focus();
}

async function boot() {
  const given = /^#token=(.+)$/.exec(location.hash);
  if (given) {
    try {
      token.set(decodeURIComponent(given[1]));
    } catch {
      token.set(given[1]);
    }
    history.replaceState(null, "", "#/"); // the token leaves the address bar and the history
  }
  if (!token.get()) {
    signIn();
    return;
  }
  clearError();
  try {
    apps = (await get(paths.apps())).apps;
  } catch (exc) {
    if (exc instanceof ApiError && exc.status === 401) {
      token.clear();
      signIn(`The token was refused: ${exc.message}`);
      return;
    }
    showError(exc.message);
    apps = [];
  }
  document.body.classList.remove("signed-out");
  $("app-select").replaceChildren(...apps.map((app) => h("option", { value: app }, app)));
  signedIn = true;
  route();
}

window.addEventListener("hashchange", () => {
  if (location.hash.startsWith("#token=")) boot();
  else if (signedIn) route();
});
$("app-select").addEventListener("change", (event) => {
  location.hash = href.users(event.target.value);
});
$("sign-out").addEventListener("click", () => {
  token.clear();
  history.replaceState(null, "", "#/");
  signIn();
});
$("banner-close").addEventListener("click", clearError);
boot();
