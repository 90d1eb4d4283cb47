// The user and company profile pages: header, tabs (panels.js) and operator actions.

import { ApiError, download, get, paths, post } from "./api.js";
import { ago, badge, empty, fmtDate, fmtNumber, h, initials, loading } from "./dom.js";
import {
  SESSION_LIMIT,
  card,
  changed,
  companyUsersTab,
  engagementTab,
  keyValues,
  npsKind,
  overviewTab,
  propertiesTab,
  segmentsTab,
  sentimentTab,
  sessionsTab,
} from "./panels.js";
import { clearNotice, confirmDialog, href, notify, periodOf, tabs } from "./ui.js";

const USER_TABS = [
  ["overview", "Overview"],
  ["sessions", "Sessions"],
  ["sentiment", "Sentiment"],
  ["engagement", "Engagement"],
  ["properties", "Properties"],
  ["segments", "Segments"],
];
const COMPANY_TABS = [
  ["overview", "Overview"],
  ["users", "Users"],
];
const POLL_MS = 1000;
const POLL_TRIES = 60;

function tabOf(query, list) {
  const tab = query.get("tab");
  return list.some(([id]) => id === tab) ? tab : list[0][0];
}

function fact(label, value, testid) {
  return h(
    "div",
    { class: "fact" },
    h("span", { class: "fact-label" }, label),
    h("span", { class: "fact-value", testid }, value),
  );
}

/** A page's state shared by its tabs: which query is shown, and whether it is still shown. */
function pageState() {
  return { alive: true, seq: 0, query: new URLSearchParams(), search: "" };
}

// ---- user page ----------------------------------------------------------------------------

const COMMANDS = {
  exclude: {
    title: "Exclude this user?",
    message:
      "Excluded users stay visible here but stop counting in their company's figures and in analytics.",
    ok: "Exclude",
    done: (p) => p.excluded === true,
    applied: "user excluded",
  },
  include: {
    title: "Include this user again?",
    message: "The user counts again in their company's figures and in analytics.",
    ok: "Include",
    done: (p) => p.excluded === false,
    applied: "user included",
  },
  reset_content: {
    title: "Reset content for this user?",
    message: "Flows, checklists and banners will show to this user again as if never seen.",
    ok: "Reset content",
    done: (p, before) => p.content_reset_at !== before.content_reset_at,
    applied: "content reset",
  },
  delete: {
    title: "Delete this user?",
    message: "Every record of this user is deleted. This cannot be undone.",
    ok: "Delete",
    danger: true,
    done: () => false, // done when the user is gone (404)
    applied: "user deleted",
  },
};

export function userProfile(ctx, app, userId) {
  const base = paths.user(app, userId);
  const state = pageState();
  let profile = null;
  let busy = false;
  const head = h("div", { class: "profile-head" }, loading());
  const tabBar = h("div", {});
  const panel = h("div", { class: "panel", testid: "tab-panel" });

  async function tabContent(tab, period) {
    const range = { from: period.from, to: period.to };
    if (tab === "overview") {
      const daily = await get(`${base}/daily`, range);
      return (p) => overviewTab(ctx, state, base, p, daily.days, null);
    }
    if (tab === "sessions") {
      const rows = await get(`${base}/sessions`, { ...range, limit: SESSION_LIMIT });
      return () => sessionsTab(ctx, state, rows);
    }
    if (tab === "sentiment") {
      const rows = await get(`${base}/sentiment`, range);
      return (p) => sentimentTab(ctx, state, p, rows);
    }
    if (tab === "engagement") {
      const rows = await get(`${base}/engagement`);
      return () => engagementTab(rows);
    }
    if (tab === "segments") {
      const segments = await get(paths.segments(app)).catch(() => null);
      return (p) => segmentsTab(p, segments);
    }
    return (p) => propertiesTab(p);
  }

  async function update(query) {
    state.query = query;
    const tab = tabOf(query, USER_TABS);
    const period = periodOf(query);
    tabBar.replaceChildren(
      tabs(USER_TABS, tab, (id) => href.user(app, userId, changed(query, (q) => q.set("tab", id)))),
    );
    const mine = ++state.seq;
    panel.replaceChildren(loading());
    panel.setAttribute("data-tab", tab);
    panel.setAttribute("data-state", "loading");
    try {
      const search = tab === "overview" ? state.search : null;
      const [p, render] = await Promise.all([
        get(base, { from: period.from, to: period.to, search }),
        tabContent(tab, period),
      ]);
      if (!state.alive || mine !== state.seq) return;
      profile = p;
      head.replaceChildren(userHead(p));
      panel.replaceChildren(render(p));
      panel.setAttribute("data-state", "ready");
    } catch (exc) {
      if (!state.alive || mine !== state.seq) return;
      ctx.fail(exc);
      panel.setAttribute("data-state", "error");
      if (exc instanceof ApiError && exc.status === 404) {
        head.replaceChildren(empty(`No user ${userId} in app ${app}.`));
        tabBar.replaceChildren();
        panel.replaceChildren();
      } else {
        panel.replaceChildren(empty("Could not load this tab."));
        if (!profile) head.replaceChildren(empty(`User ${userId} could not be loaded.`));
      }
    }
  }

  function userHead(p) {
    const actions = h(
      "div",
      { class: "actions" },
      h(
        "button",
        { class: "btn", type: "button", testid: "btn-export", onclick: exportCsv },
        "Export CSV",
      ),
      p.excluded
        ? h(
            "button",
            { class: "btn", type: "button", testid: "btn-include", onclick: () => run("include") },
            "Include",
          )
        : h(
            "button",
            { class: "btn", type: "button", testid: "btn-exclude", onclick: () => run("exclude") },
            "Exclude",
          ),
      h(
        "button",
        {
          class: "btn",
          type: "button",
          testid: "btn-reset-content",
          onclick: () => run("reset_content"),
        },
        "Reset content",
      ),
      h(
        "button",
        {
          class: "btn btn-danger-outline",
          type: "button",
          testid: "btn-delete",
          onclick: () => run("delete"),
        },
        "Delete",
      ),
    );
    for (const button of actions.querySelectorAll("button")) button.disabled = busy;
    const since = p.signed_up_at
      ? fact("Signed up", fmtDate(p.signed_up_at), "header-signed-up")
      : fact("First seen", fmtDate(p.first_seen_at), "header-first-seen");
    return h(
      "div",
      { class: "card profile-card" },
      h(
        "div",
        { class: "profile-top" },
        h("div", { class: "avatar avatar-lg" }, initials(p.name, p.user_id)),
        h(
          "div",
          { class: "profile-title" },
          h(
            "div",
            { class: "title-row" },
            h("h1", { testid: "profile-name" }, p.name || p.user_id),
            p.excluded ? badge("Excluded", "warn", "excluded-badge") : null,
          ),
          h("div", { class: "mono muted", testid: "profile-id" }, p.user_id),
          p.email ? h("div", { class: "muted", testid: "profile-email" }, p.email) : null,
        ),
        actions,
      ),
      h(
        "div",
        { class: "facts" },
        fact(
          "Company",
          p.company_id
            ? h(
                "a",
                { href: href.company(app, p.company_id), testid: "company-link" },
                p.company_name || p.company_id,
              )
            : "—",
        ),
        fact("Country", p.country || "—", "header-country"),
        fact("Total sessions", fmtNumber(p.total_sessions), "header-total-sessions"),
        fact("Last seen", ago(p.last_seen_at), "header-last-seen"),
        since,
        fact(
          "Latest NPS",
          p.nps_latest === null ? "—" : badge(String(p.nps_latest), npsKind(p.nps_latest)),
        ),
      ),
    );
  }

  async function exportCsv() {
    try {
      const name = await download(`${base}/export`, { format: "csv" }, `${userId}.csv`);
      notify(`exported ${name}`);
    } catch (exc) {
      ctx.fail(exc);
    }
  }

  function setBusy(value) {
    busy = value;
    for (const button of head.querySelectorAll(".actions button")) button.disabled = value;
  }

  async function run(command) {
    const spec = COMMANDS[command];
    const { ok, reason } = await confirmDialog({
      title: spec.title,
      message: spec.message,
      okLabel: spec.ok,
      danger: spec.danger,
      withReason: true,
    });
    if (!ok || !state.alive) return;
    const before = profile;
    setBusy(true);
    try {
      await post(`${base}/commands`, reason ? { command, reason } : { command });
    } catch (exc) {
      setBusy(false);
      ctx.fail(exc);
      return;
    }
    notify("command sent; the worker applies it shortly", { sticky: true });
    for (let i = 0; i < POLL_TRIES && state.alive; i++) {
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
      try {
        const p = await get(base);
        if (spec.done(p, before)) break;
      } catch (exc) {
        if (command === "delete" && exc instanceof ApiError && exc.status === 404) {
          setBusy(false);
          ctx.go(href.users(app));
          notify(`applied: ${spec.applied}`);
          return;
        }
        ctx.fail(exc);
        break;
      }
      if (i === POLL_TRIES - 1) {
        notify("the worker has not applied the command yet; reload later to see it", {
          sticky: true,
        });
        setBusy(false);
        return;
      }
    }
    if (!state.alive) return;
    setBusy(false);
    await update(state.query);
    if (state.alive) notify(`applied: ${spec.applied}`);
  }

  return {
    el: h(
      "section",
      { class: "page", testid: "user-page", "data-user-id": userId },
      h(
        "div",
        { class: "crumbs" },
        h("a", { href: href.users(app), testid: "crumb-users" }, "Users"),
        " / ",
        h("span", {}, userId),
      ),
      head,
      tabBar,
      panel,
    ),
    update,
    dispose() {
      state.alive = false;
      if (busy) clearNotice(); // its command's polling stops with the page
    },
  };
}

// ---- company page -------------------------------------------------------------------------

export function companyProfile(ctx, app, companyId) {
  const base = paths.company(app, companyId);
  const state = pageState();
  let loaded = false;
  const head = h("div", { class: "profile-head" }, loading());
  const tabBar = h("div", {});
  const panel = h("div", { class: "panel", testid: "tab-panel" });

  async function tabContent(tab, period) {
    if (tab === "users") {
      const rows = await get(`${base}/users`);
      return () => companyUsersTab(app, rows);
    }
    const [daily, segments] = await Promise.all([
      get(`${base}/daily`, { from: period.from, to: period.to }),
      get(paths.segments(app)).catch(() => null),
    ]);
    return (p) =>
      overviewTab(ctx, state, base, p, daily.days, [
        h(
          "div",
          { class: "grid-2" },
          card("Properties", keyValues(p.properties, "company-properties-table")),
          segmentsTab(p, segments),
        ),
      ]);
  }

  async function update(query) {
    state.query = query;
    const tab = tabOf(query, COMPANY_TABS);
    const period = periodOf(query);
    tabBar.replaceChildren(
      tabs(COMPANY_TABS, tab, (id) =>
        href.company(app, companyId, changed(query, (q) => q.set("tab", id))),
      ),
    );
    const mine = ++state.seq;
    panel.replaceChildren(loading());
    panel.setAttribute("data-tab", tab);
    panel.setAttribute("data-state", "loading");
    try {
      const search = tab === "overview" ? state.search : null;
      const [p, render] = await Promise.all([
        get(base, { from: period.from, to: period.to, search }),
        tabContent(tab, period),
      ]);
      if (!state.alive || mine !== state.seq) return;
      loaded = true;
      head.replaceChildren(companyHead(p));
      panel.replaceChildren(render(p));
      panel.setAttribute("data-state", "ready");
    } catch (exc) {
      if (!state.alive || mine !== state.seq) return;
      ctx.fail(exc);
      panel.setAttribute("data-state", "error");
      if (exc instanceof ApiError && exc.status === 404) {
        head.replaceChildren(empty(`No company ${companyId} in app ${app}.`));
        tabBar.replaceChildren();
        panel.replaceChildren();
      } else {
        panel.replaceChildren(empty("Could not load this tab."));
        if (!loaded) head.replaceChildren(empty(`Company ${companyId} could not be loaded.`));
      }
    }
  }

  function companyHead(p) {
    const since = p.signed_up_at
      ? fact("Signed up", fmtDate(p.signed_up_at), "company-signed-up")
      : fact("First seen", fmtDate(p.first_seen_at), "company-first-seen");
    return h(
      "div",
      { class: "card profile-card" },
      h(
        "div",
        { class: "profile-top" },
        h("div", { class: "avatar avatar-lg avatar-square" }, initials(p.name, p.company_id)),
        h(
          "div",
          { class: "profile-title" },
          h("h1", { testid: "company-name" }, p.name || p.company_id),
          h("div", { class: "mono muted", testid: "company-id" }, p.company_id),
        ),
      ),
      h(
        "div",
        { class: "facts" },
        fact("Users", fmtNumber(p.users_count), "company-users-count"),
        fact("Total sessions", fmtNumber(p.total_sessions), "company-total-sessions"),
        fact("Last seen", ago(p.last_seen_at), "company-last-seen"),
        since,
      ),
    );
  }

  return {
    el: h(
      "section",
      { class: "page", testid: "company-page", "data-company-id": companyId },
      h(
        "div",
        { class: "crumbs" },
        h("a", { href: href.companies(app), testid: "crumb-companies" }, "Companies"),
        " / ",
        h("span", {}, companyId),
      ),
      head,
      tabBar,
      panel,
    ),
    update,
    dispose() {
      state.alive = false;
    },
  };
}
