// The frame the user and company pages share: crumbs, head, tab bar and the panel of one tab.

import { ApiError, get } from "./api.js";
import { empty, h, loading } from "./dom.js";
import { changed } from "./panels.js";
import { periodOf, tabs } from "./ui.js";

/** A page's state shared by its tabs: which query is shown, and whether it is still shown. */
export function pageState() {
  return { alive: true, seq: 0, query: new URLSearchParams(), search: "" };
}

function tabOf(query, list) {
  const tab = query.get("tab");
  return list.some(([id]) => id === tab) ? tab : list[0][0];
}

/**
 * A profile page. `spec`:
 *   base       the profile's API path
 *   tabs       [[id, label]], the first one shown by default
 *   link       (query) -> the page's href with that query
 *   content    async (tab, period) -> (profile) -> the tab's body
 *   head       (profile) -> the header card
 *   missing    text shown when the API has no such profile (404)
 *   broken     text shown when the profile could not be loaded otherwise
 *   attrs      the section's attributes (testid, data-…-id)
 *   crumb      the link back to the list; `id` follows it
 * Returns {el, head, update(query), dispose(), profile}: `profile` is the last one loaded,
 * or null.
 */
export function profilePage(ctx, state, spec) {
  const head = h("div", { class: "profile-head" }, loading());
  const tabBar = h("div", {});
  const panel = h("div", { class: "panel", testid: "tab-panel" });
  const page = {
    el: h(
      "section",
      { class: "page", ...spec.attrs },
      h("div", { class: "crumbs" }, spec.crumb, " / ", h("span", {}, spec.id)),
      head,
      tabBar,
      panel,
    ),
    head,
    update,
    dispose() {
      state.alive = false;
    },
    profile: null,
  };

  async function update(query) {
    state.query = query;
    const tab = tabOf(query, spec.tabs);
    const period = periodOf(query);
    tabBar.replaceChildren(
      tabs(spec.tabs, tab, (id) => spec.link(changed(query, (q) => q.set("tab", id)))),
    );
    const mine = ++state.seq;
    panel.replaceChildren(loading());
    panel.setAttribute("data-tab", tab);
    panel.setAttribute("data-state", "loading");
    try {
      const search = tab === "overview" ? state.search : null;
      const [p, render] = await Promise.all([
        get(spec.base, { from: period.from, to: period.to, search }),
        spec.content(tab, period),
      ]);
      if (!state.alive || mine !== state.seq) return;
      page.profile = p;
      head.replaceChildren(spec.head(p));
      panel.replaceChildren(render(p));
      panel.setAttribute("data-state", "ready");
    } catch (exc) {
      if (!state.alive || mine !== state.seq) return;
      failed(exc);
    }
  }

  function failed(exc) {
    ctx.fail(exc);
    panel.setAttribute("data-state", "error");
    if (exc instanceof ApiError && exc.status === 404) {
      head.replaceChildren(empty(spec.missing));
      tabBar.replaceChildren();
      panel.replaceChildren();
    } else {
      panel.replaceChildren(empty("Could not load this tab."));
      if (!page.profile) head.replaceChildren(empty(spec.broken));
    }
  }

  return page;
}
