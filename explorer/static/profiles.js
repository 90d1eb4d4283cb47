// The user and company profile pages: header, tabs (panels.js) and operator actions; the frame
// they share (tab bar, loading, errors) is profile-page.js.

import { ApiError, download, get, paths, post } from "./api.js";
import { ago, badge, fmtDate, fmtNumber, h, initials } from "./dom.js";
import {
  SESSION_LIMIT,
  card,
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
import { pageState, profilePage } from "./profile-page.js";
import { clearNotice, confirmDialog, href, notify } from "./ui.js";

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

function fact(label, value, testid) {
  return h(
    "div",
    { class: "fact" },
    h("span", { class: "fact-label" }, label),
    h("span", { class: "fact-value", testid }, value),
  );
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
  merge: {
    title: "Merge another id into this user?",
    message:
      "Its records (an anonymous visitor's, another device's) count for this user from now on. " +
      "Unmerge undoes it.",
    ok: "Merge",
    input: { placeholder: "The id to merge into this user", testid: "merge-id" },
    done: (p, _before, id) => (p.merged_ids || []).includes(id),
    applied: "id merged",
  },
  unmerge: {
    title: "Unmerge this id?",
    message: "Its records stop counting for this user; it stands on its own again.",
    ok: "Unmerge",
    withReason: true,
    done: (p, _before, id) => !(p.merged_ids || []).includes(id),
    applied: "id unmerged",
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
  let busy = false;

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

  const page = profilePage(ctx, state, {
    base,
    tabs: USER_TABS,
    link: (query) => href.user(app, userId, query),
    content: tabContent,
    head: userHead,
    missing: `No user ${userId} in app ${app}.`,
    broken: `User ${userId} could not be loaded.`,
    attrs: { testid: "user-page", "data-user-id": userId },
    crumb: h("a", { href: href.users(app), testid: "crumb-users" }, "Users"),
    id: userId,
  });

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
        { class: "btn", type: "button", testid: "btn-merge", onclick: () => run("merge") },
        "Merge…",
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
    const merged = (p.merged_ids || []).map((id) =>
      h(
        "span",
        { class: "merged-id", testid: "merged-id", "data-id": id },
        h("a", { class: "mono", href: href.user(app, id) }, id),
        " ",
        h(
          "button",
          {
            class: "btn btn-small",
            type: "button",
            testid: "btn-unmerge",
            onclick: () => run("unmerge", id),
          },
          "Unmerge",
        ),
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
        merged.length
          ? h(
              "div",
              { class: "fact fact-wide" },
              h("span", { class: "fact-label" }, "Merged ids"),
              h("span", { class: "merged-ids", testid: "merged-ids" }, ...merged),
            )
          : null,
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
    for (const button of page.head.querySelectorAll(".actions button")) button.disabled = value;
  }

  // `id`: the merged id an unmerge is for
  async function run(command, id = null) {
    const spec = COMMANDS[command];
    const { ok, reason } = await confirmDialog({
      title: spec.title,
      message: spec.message,
      okLabel: spec.ok,
      danger: spec.danger,
      withReason: spec.input ? false : true,
      input: spec.input || null,
    });
    if (!ok || !state.alive) return;
    if (command === "merge" && !reason) return; // no id given
    const target = command === "merge" ? reason : id;
    const before = page.profile;
    setBusy(true);
    try {
      if (command === "merge") {
        await post(`${base}/merges`, { previous_id: target });
      } else {
        const where = command === "unmerge" ? paths.user(app, id) : base;
        await post(`${where}/commands`, reason ? { command, reason } : { command });
      }
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
        if (spec.done(p, before, target)) break;
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
    await page.update(state.query);
    if (state.alive) notify(`applied: ${spec.applied}`);
  }

  return {
    el: page.el,
    update: page.update,
    dispose() {
      page.dispose();
      if (busy) clearNotice(); // its command's polling stops with the page
    },
  };
}

// ---- company page -------------------------------------------------------------------------

export function companyProfile(ctx, app, companyId) {
  const base = paths.company(app, companyId);
  const state = pageState();

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

  function companyHead(p) {
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
        fact("First seen", fmtDate(p.first_seen_at), "company-first-seen"),
        fact("Signed up", fmtDate(p.signed_up_at), "company-signed-up"),
      ),
    );
  }

  const page = profilePage(ctx, state, {
    base,
    tabs: COMPANY_TABS,
    link: (query) => href.company(app, companyId, query),
    content: tabContent,
    head: companyHead,
    missing: `No company ${companyId} in app ${app}.`,
    broken: `Company ${companyId} could not be loaded.`,
    attrs: { testid: "company-page", "data-company-id": companyId },
    crumb: h("a", { href: href.companies(app), testid: "crumb-companies" }, "Companies"),
    id: companyId,
  });

  return { el: page.el, update: page.update, dispose: page.dispose };
}
