// The app's users and companies, a page at a time.

import { get, paths } from "./api.js";
import { ago, badge, debounce, empty, fmtNumber, h, initials, loading, table } from "./dom.js";
import { href } from "./ui.js";

const PAGE = 50;

function pageHeader(title, subtitle, ...extra) {
  return h(
    "div",
    { class: "page-header" },
    h("div", {}, h("h1", {}, title), subtitle),
    h("div", { class: "page-tools" }, extra),
  );
}

/** Rows, a "Load more" button while the API has a next cursor, and a sequence number so a
 * slow old answer never overwrites a newer one. */
function pager(load, render) {
  let rows = [];
  let cursor = null;
  let seq = 0;
  const more = h("button", { class: "btn", type: "button", testid: "load-more" }, "Load more");
  const moreBox = h("div", { class: "more" });
  async function fetchPage(reset) {
    const mine = ++seq;
    more.disabled = true;
    const answer = await load(reset ? null : cursor);
    if (mine !== seq) return;
    more.disabled = false;
    if (answer === null) return; // the error is shown; "Load more" may be tried again
    rows = reset ? answer.rows : rows.concat(answer.rows);
    cursor = answer.next;
    render(rows, answer);
    moreBox.replaceChildren(cursor ? more : "");
  }
  more.addEventListener("click", () => fetchPage(false));
  return { moreBox, reload: () => fetchPage(true) };
}

export function usersList(ctx, app, query) {
  const q = query.get("q") || "";
  const sort = query.get("sort") === "signed_up" ? "signed_up" : "last_seen";
  const state = { q, sort };
  const subtitle = h("p", { class: "muted", testid: "users-total" }, "");
  const search = h("input", {
    class: "input input-search",
    type: "search",
    placeholder: "Search by id, name or email prefix",
    value: q,
    testid: "user-search",
    "aria-label": "Search users",
  });
  const sortSelect = h(
    "select",
    { class: "select", testid: "sort-select", "aria-label": "Sort users" },
    h("option", { value: "last_seen", selected: sort === "last_seen" }, "Last seen"),
    h("option", { value: "signed_up", selected: sort === "signed_up" }, "Signed up"),
  );
  const box = h("div", { class: "card card-flush" }, loading());

  const columns = [
    {
      label: "User",
      cell: (u) =>
        h(
          "a",
          { class: "person", href: href.user(app, u.user_id), testid: "user-link" },
          h("span", { class: "avatar avatar-sm" }, initials(u.name, u.user_id)),
          h(
            "span",
            { class: "person-text" },
            h("span", { class: "person-name" }, u.name || u.user_id),
            h("span", { class: "mono muted" }, u.user_id),
          ),
        ),
    },
    { label: "Email", cell: (u) => u.email || "—", class: "wrap" },
    {
      label: "Company",
      cell: (u) =>
        u.company_id
          ? h("a", { href: href.company(app, u.company_id) }, u.company_name || u.company_id)
          : "—",
    },
    { label: "Last seen", cell: (u) => ago(u.last_seen_at) },
    { label: "Sessions", cell: (u) => fmtNumber(u.total_sessions), class: "num" },
    { label: "", cell: (u) => (u.excluded ? badge("Excluded", "warn", "excluded-badge") : "") },
  ];

  const { moreBox, reload } = pager(
    async (cursor) => {
      try {
        const params = { q: state.q, sort: state.sort, limit: PAGE, cursor };
        const answer = await get(paths.users(app), params);
        return { rows: answer.users, next: answer.next_cursor, total: answer.total };
      } catch (exc) {
        ctx.fail(exc);
        if (cursor === null) box.replaceChildren(empty("Could not load the users."));
        return null;
      }
    },
    (rows, answer) => {
      subtitle.textContent =
        answer.total === null || answer.total === undefined
          ? `${rows.length}${answer.next ? "+" : ""} matching “${state.q}”`
          : `${fmtNumber(answer.total)} users`;
      box.replaceChildren(
        table(columns, rows, {
          rowTestid: "user-row",
          rowAttrs: (u) => ({ "data-user-id": u.user_id }),
          testid: "users-table",
          emptyText: state.q ? "No user matches." : "No users yet.",
        }),
      );
    },
  );

  const remember = () => {
    // Keep the list's state in the URL (back/forward, reload) without a new history entry.
    const qs = {};
    if (state.q) qs.q = state.q;
    if (state.sort !== "last_seen") qs.sort = state.sort;
    history.replaceState(null, "", href.users(app, qs));
    ctx.rekey();
  };
  search.addEventListener(
    "input",
    debounce(() => {
      state.q = search.value.trim();
      remember();
      reload();
    }, 250),
  );
  sortSelect.addEventListener("change", () => {
    state.sort = sortSelect.value;
    remember();
    reload();
  });
  reload();
  return {
    el: h(
      "section",
      { class: "page", testid: "users-page" },
      pageHeader("Users", subtitle),
      h("div", { class: "toolbar" }, search, h("label", { class: "muted" }, "Sort by"), sortSelect),
      box,
      moreBox,
    ),
  };
}

export function companiesList(ctx, app) {
  const subtitle = h("p", { class: "muted", testid: "companies-total" }, "");
  const box = h("div", { class: "card card-flush" }, loading());
  const columns = [
    {
      label: "Company",
      cell: (c) =>
        h(
          "a",
          { class: "person", href: href.company(app, c.company_id), testid: "company-link" },
          h("span", { class: "avatar avatar-sm avatar-square" }, initials(c.name, c.company_id)),
          h(
            "span",
            { class: "person-text" },
            h("span", { class: "person-name" }, c.name || c.company_id),
            h("span", { class: "mono muted" }, c.company_id),
          ),
        ),
    },
    { label: "Users", cell: (c) => fmtNumber(c.users_count), class: "num" },
    { label: "Sessions", cell: (c) => fmtNumber(c.total_sessions), class: "num" },
    { label: "Last seen", cell: (c) => ago(c.last_seen_at) },
  ];
  const { moreBox, reload } = pager(
    async (cursor) => {
      try {
        const answer = await get(paths.companies(app), { limit: PAGE, cursor });
        return { rows: answer.companies, next: answer.next_cursor, total: answer.total };
      } catch (exc) {
        ctx.fail(exc);
        if (cursor === null) box.replaceChildren(empty("Could not load the companies."));
        return null;
      }
    },
    (rows, answer) => {
      // `total` is an extra of the API (not in every version): the rows shown otherwise.
      subtitle.textContent =
        typeof answer.total === "number"
          ? `${fmtNumber(answer.total)} companies`
          : `${rows.length}${answer.next ? "+" : ""} companies`;
      box.replaceChildren(
        table(columns, rows, {
          rowTestid: "company-row",
          rowAttrs: (c) => ({ "data-company-id": c.company_id }),
          testid: "companies-table",
          emptyText: "No companies yet.",
        }),
      );
    },
  );
  reload();
  return {
    el: h(
      "section",
      { class: "page", testid: "companies-page" },
      pageHeader("Companies", subtitle),
      box,
      moreBox,
    ),
  };
}
