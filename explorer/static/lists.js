// The app's users and companies, a page at a time.

import { get, paths } from "./api.js";
import { ago, badge, debounce, empty, fmtNumber, h, loading, personLink, table } from "./dom.js";
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

/** A list's table in a card, a page at a time (pager), and the line that counts its rows.
 * `spec`: totalTestid (of that line), load(cursor) -> the API's page, rowsKey (where its rows
 * are), failText, caption(rows, page) -> that line, columns, table (options), emptyText(). */
function pagedTable(ctx, spec) {
  const subtitle = h("p", { class: "muted", testid: spec.totalTestid }, "");
  const box = h("div", { class: "card card-flush" }, loading());
  const { moreBox, reload } = pager(
    async (cursor) => {
      try {
        const answer = await spec.load(cursor);
        return { rows: answer[spec.rowsKey], next: answer.next_cursor, total: answer.total };
      } catch (exc) {
        ctx.fail(exc);
        if (cursor === null) box.replaceChildren(empty(spec.failText));
        return null;
      }
    },
    (rows, answer) => {
      subtitle.textContent = spec.caption(rows, answer);
      box.replaceChildren(
        table(spec.columns, rows, { ...spec.table, emptyText: spec.emptyText() }),
      );
    },
  );
  return { subtitle, box, moreBox, reload };
}

/** A list with a search box and a sort select, their state kept in the page's URL.
 * `spec`: sorts [[id, label]] (the first the default), placeholder, label (of the search box
 * and sort select), searchTestid, sortTestid, hrefOf(query) -> the list's href, table (the
 * pagedTable spec without load), load({q, sort, cursor}) -> the API's page, testid, title. */
function searchableList(ctx, query, spec) {
  const sortIds = spec.sorts.map(([id]) => id);
  const state = {
    q: query.get("q") || "",
    sort: sortIds.includes(query.get("sort")) ? query.get("sort") : sortIds[0],
  };
  const search = h("input", {
    class: "input input-search",
    type: "search",
    placeholder: spec.placeholder,
    value: state.q,
    testid: spec.searchTestid,
    "aria-label": `Search ${spec.label}`,
  });
  const sortSelect = h(
    "select",
    { class: "select", testid: spec.sortTestid, "aria-label": `Sort ${spec.label}` },
    spec.sorts.map(([id, label]) => h("option", { value: id, selected: id === state.sort }, label)),
  );
  const { subtitle, box, moreBox, reload } = pagedTable(ctx, {
    ...spec.table(state),
    load: (cursor) => spec.load({ q: state.q, sort: state.sort, cursor }),
  });
  // A search lists id matches first, then the others (the API's order): no sort applies.
  const sortable = () => {
    sortSelect.disabled = Boolean(state.q);
    sortSelect.title = state.q ? "search results come id matches first, not sorted" : "";
  };
  sortable();
  const remember = () => {
    sortable();
    // Keep the list's state in the URL (back/forward, reload) without a new history entry.
    const qs = {};
    if (state.q) qs.q = state.q;
    if (state.sort !== sortIds[0]) qs.sort = state.sort;
    history.replaceState(null, "", spec.hrefOf(qs));
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
      { class: "page", testid: spec.testid },
      pageHeader(spec.title, subtitle),
      h("div", { class: "toolbar" }, search, h("label", { class: "muted" }, "Sort by"), sortSelect),
      box,
      moreBox,
    ),
  };
}

/** The caption of a list: its total, or while searching the rows found. */
function counted(noun, state) {
  return (rows, answer) =>
    answer.total === null || answer.total === undefined
      ? `${rows.length}${answer.next ? "+" : ""} matching “${state.q}”`
      : `${fmtNumber(answer.total)} ${noun}`;
}

export function usersList(ctx, app, query) {
  const columns = [
    {
      label: "User",
      cell: (u) => personLink(href.user(app, u.user_id), "user-link", u.name, u.user_id),
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
  return searchableList(ctx, query, {
    title: "Users",
    testid: "users-page",
    label: "users",
    sorts: [
      ["last_seen", "Last seen"],
      ["signed_up", "Signed up"],
    ],
    placeholder: "Search by id, name or email prefix",
    searchTestid: "user-search",
    sortTestid: "sort-select",
    hrefOf: (qs) => href.users(app, qs),
    load: ({ q, sort, cursor }) => get(paths.users(app), { q, sort, limit: PAGE, cursor }),
    table: (state) => ({
      totalTestid: "users-total",
      rowsKey: "users",
      failText: "Could not load the users.",
      caption: counted("users", state),
      columns,
      table: {
        rowTestid: "user-row",
        rowAttrs: (u) => ({ "data-user-id": u.user_id }),
        testid: "users-table",
      },
      emptyText: () => (state.q ? "No user matches." : "No users yet."),
    }),
  });
}

export function companiesList(ctx, app, query) {
  const columns = [
    {
      label: "Company",
      cell: (c) =>
        personLink(href.company(app, c.company_id), "company-link", c.name, c.company_id, true),
    },
    { label: "Users", cell: (c) => fmtNumber(c.users_count), class: "num" },
    { label: "Sessions", cell: (c) => fmtNumber(c.total_sessions), class: "num" },
    { label: "Last seen", cell: (c) => ago(c.last_seen_at) },
  ];
  return searchableList(ctx, query, {
    title: "Companies",
    testid: "companies-page",
    label: "companies",
    sorts: [
      ["last_seen", "Last seen"],
      ["users", "Most users"],
      ["name", "Name (A–Z)"],
      ["id", "Id"],
    ],
    placeholder: "Search by id or name prefix",
    searchTestid: "company-search",
    sortTestid: "company-sort",
    hrefOf: (qs) => href.companies(app, qs),
    load: ({ q, sort, cursor }) => get(paths.companies(app), { q, sort, limit: PAGE, cursor }),
    table: (state) => ({
      totalTestid: "companies-total",
      rowsKey: "companies",
      failText: "Could not load the companies.",
      caption: counted("companies", state),
      columns,
      table: {
        rowTestid: "company-row",
        rowAttrs: (c) => ({ "data-company-id": c.company_id }),
        testid: "companies-table",
      },
      emptyText: () => (state.q ? "No company matches." : "No companies yet."),
    }),
  });
}
