// The tabs of the profile pages: overview with chart and top lists, sessions, sentiment,
// engagement, properties, segments, and a company's members.

import { get } from "./api.js";
import { dailyChart } from "./chart.js";
import {
  ago,
  badge,
  debounce,
  empty,
  fmtClock,
  fmtDuration,
  fmtNumber,
  fmtTime,
  fmtValue,
  h,
  personLink,
  table,
} from "./dom.js";
import { href, periodOf, periodPicker, setPeriod } from "./ui.js";

export const SESSION_LIMIT = 200;

/** The page's query with one change, as a new URLSearchParams. */
export function changed(query, change) {
  const next = new URLSearchParams(query);
  change(next);
  return next;
}

function metric(label, text, value, testid, hint) {
  return h(
    "div",
    { class: "card metric" },
    h("span", { class: "metric-label", testid: `${testid}-label` }, label),
    h("span", { class: "metric-value", testid, "data-value": value }, text),
    hint ? h("span", { class: "metric-hint muted" }, hint) : null,
  );
}

export function card(title, ...body) {
  return h("div", { class: "card" }, title ? h("h3", { class: "card-title" }, title) : null, body);
}

// ---- overview (users and companies alike) -------------------------------------------------

function topTables(overview, search) {
  const events = table(
    [
      { label: "Tracked event", cell: (e) => e.name, class: "wrap" },
      { label: "Count", cell: (e) => fmtNumber(e.count), class: "num" },
    ],
    overview.top_events,
    { rowTestid: "top-event-row", emptyText: search ? "No event matches." : "No events." },
  );
  const pages = table(
    [
      { label: "Page", cell: (p) => p.page, class: "wrap mono" },
      { label: "Views", cell: (p) => fmtNumber(p.count), class: "num" },
    ],
    overview.top_pages,
    { rowTestid: "top-page-row", emptyText: search ? "No page matches." : "No page views." },
  );
  return [
    h("div", { class: "card", testid: "top-events", "data-search": search }, [
      h("h3", { class: "card-title" }, "Top tracked events"),
      events,
    ]),
    h("div", { class: "card", testid: "top-pages", "data-search": search }, [
      h("h3", { class: "card-title" }, "Top pages"),
      pages,
    ]),
  ];
}

/** The overview tab: period, totals, chart, top events and pages with their search. */
export function overviewTab(ctx, state, base, profile, days, extra) {
  const period = periodOf(state.query);
  const o = profile.overview;
  const tables = h("div", { class: "grid-2" }, topTables(o, state.search));
  const searchBox = h("input", {
    class: "input input-search",
    type: "search",
    placeholder: "Filter events and pages",
    value: state.search,
    testid: "event-search",
    "aria-label": "Filter events and pages",
  });
  let seq = 0;
  searchBox.addEventListener(
    "input",
    debounce(async () => {
      const search = searchBox.value.trim();
      const mine = ++seq;
      try {
        const answer = await get(base, { from: period.from, to: period.to, search });
        if (!state.alive || mine !== seq) return;
        state.search = search;
        tables.replaceChildren(...topTables(answer.overview, search));
      } catch (exc) {
        ctx.fail(exc);
      }
    }, 250),
  );
  return periodTab(
    ctx,
    state,
    h(
      "div",
      { class: "grid-3" },
      metric(
        "Tracked events",
        fmtNumber(o.total_events),
        o.total_events,
        "total-events",
        "track calls only: no page views, survey answers or content views",
      ),
      metric(
        "Sessions started",
        fmtNumber(o.sessions),
        o.sessions,
        "sessions-count",
        "a session counts every interaction of the user",
      ),
      metric(
        "Avg session length",
        fmtDuration(o.avg_session_seconds),
        o.avg_session_seconds,
        "avg-session",
        "first to last interaction",
      ),
    ),
    card("Activity per day", dailyChart(days)),
    h(
      "div",
      { class: "toolbar" },
      searchBox,
      h("span", { class: "muted" }, "case-insensitive, every match"),
    ),
    tables,
    extra,
  );
}

/** A tab of the page's period: the period picker above the tab's body. */
function periodTab(ctx, state, ...body) {
  const picker = periodPicker(periodOf(state.query), (period) =>
    ctx.replace(changed(state.query, (q) => setPeriod(q, period))),
  );
  return h("div", { class: "stack" }, h("div", { class: "toolbar" }, picker), body);
}

// ---- user tabs ----------------------------------------------------------------------------

/** A session's interactions as the badge counts them, and how many of them are tracked events
 * (the overview's "Tracked events" counts only those). */
function interactions(session) {
  const tracked = session.breakdown.filter((e) => e.type === "track").length;
  const all = `${fmtNumber(session.events)} interaction${session.events === 1 ? "" : "s"}`;
  return [
    h(
      "span",
      {
        class: "pill",
        testid: "session-interactions",
        title: "every interaction: page views, tracked events, survey answers, content",
      },
      all,
    ),
    h(
      "span",
      { class: "muted", testid: "session-tracked" },
      `${fmtNumber(tracked)} tracked event${tracked === 1 ? "" : "s"}`,
    ),
  ];
}

/** A breakdown row's name: a page view's is its page, shown once (in the Page column). */
function stepName(e) {
  if (e.type === "page" && e.name === e.page) return h("span", { class: "muted" }, "page view");
  return e.name ?? "—";
}

export function sessionsTab(ctx, state, sessions) {
  const list = sessions.map((session, i) => {
    const summary = h(
      "summary",
      { "aria-expanded": "false", testid: "session-summary" },
      h("span", { class: "chevron", "aria-hidden": "true" }),
      h("span", { class: "session-when" }, fmtTime(session.started_at)),
      h("span", { class: "muted session-length" }, fmtDuration(session.duration_seconds)),
      interactions(session),
    );
    const row = h(
      "details",
      { class: "session", testid: "session-row", "data-index": i },
      summary,
      h(
        "div",
        { testid: "session-breakdown" },
        table(
          [
            { label: "Time (UTC)", cell: (e) => fmtClock(e.at), class: "mono" },
            { label: "Type", cell: (e) => badge(e.type, e.type) },
            { label: "Name", cell: stepName, class: "wrap" },
            { label: "Page", cell: (e) => e.page ?? "—", class: "wrap mono" },
          ],
          session.breakdown,
          { rowTestid: "breakdown-row", rowAttrs: (e) => ({ "data-type": e.type }) },
        ),
      ),
    );
    row.addEventListener("toggle", () => {
      summary.setAttribute("aria-expanded", row.open ? "true" : "false");
    });
    return row;
  });
  const count = `${sessions.length} session${sessions.length === 1 ? "" : "s"}`;
  const note =
    sessions.length >= SESSION_LIMIT
      ? `the newest ${SESSION_LIMIT} sessions of the period; open one to see its interactions`
      : `${count} in the period, newest first; open one to see its interactions`;
  return periodTab(
    ctx,
    state,
    h("p", { class: "muted", testid: "sessions-note" }, note),
    sessions.length
      ? h("div", { class: "card card-flush sessions" }, list)
      : empty("No sessions in this period."),
  );
}

export function npsKind(score) {
  if (score === null || score === undefined) return "neutral";
  return score >= 9 ? "good" : score >= 7 ? "warn" : "bad";
}

export function sentimentTab(ctx, state, profile, rows) {
  return periodTab(
    ctx,
    state,
    h(
      "div",
      { class: "grid-3" },
      metric(
        "Latest NPS",
        profile.nps_latest === null ? "—" : String(profile.nps_latest),
        profile.nps_latest ?? "",
        "nps-latest",
      ),
      metric("Responses in the period", fmtNumber(rows.length), rows.length, "responses-count"),
    ),
    card(
      "Responses",
      table(
        [
          { label: "Responded", cell: (r) => fmtTime(r.responded_at) },
          { label: "Survey", cell: (r) => [r.survey_id, " ", badge(r.survey_type, "neutral")] },
          { label: "Question", cell: (r) => r.question ?? "—", class: "wrap" },
          {
            label: "Score",
            cell: (r) => (r.score === null ? "—" : badge(String(r.score), npsKind(r.score))),
          },
          { label: "Answer", cell: (r) => r.answer ?? "—", class: "wrap" },
          { label: "Page", cell: (r) => r.page ?? "—", class: "wrap mono" },
        ],
        rows,
        { rowTestid: "sentiment-row", emptyText: "No survey responses in this period." },
      ),
    ),
  );
}

const STATUS_KIND = { completed: "good", dismissed: "bad", in_progress: "warn" };

export function engagementTab(items) {
  return card(
    "Content",
    table(
      [
        {
          label: "Content",
          cell: (c) => [
            h("span", { class: "person-name" }, c.content_name || c.content_id),
            h("span", { class: "mono muted block" }, c.content_id),
          ],
        },
        { label: "Type", cell: (c) => c.content_type },
        { label: "Status", cell: (c) => badge(c.status, STATUS_KIND[c.status] || "neutral") },
        { label: "Last action", cell: (c) => [c.last_action, " ", ago(c.last_action_at)] },
        { label: "Last page", cell: (c) => c.last_page ?? "—", class: "wrap mono" },
        { label: "Interactions", cell: (c) => fmtNumber(c.interactions), class: "num" },
        {
          label: "Steps completed",
          cell: (c) => (c.steps_completed.length ? c.steps_completed.join(", ") : "—"),
        },
      ],
      items,
      { rowTestid: "engagement-row", emptyText: "No flows, checklists or banners seen." },
    ),
  );
}

export function keyValues(values, testid) {
  const rows = Object.keys(values || {})
    .sort()
    .map((key) => [key, values[key]]);
  return table(
    [
      { label: "Key", cell: ([key]) => key, class: "mono" },
      { label: "Value", cell: ([, value]) => fmtValue(value), class: "wrap" },
    ],
    rows,
    {
      testid,
      rowTestid: "property-row",
      rowAttrs: ([key]) => ({ "data-key": key }),
      emptyText: "None.",
    },
  );
}

export function propertiesTab(profile) {
  return h(
    "div",
    { class: "grid-2" },
    card("Traits", keyValues(profile.properties, "traits-table")),
    card("Auto properties", keyValues(profile.auto_properties, "auto-properties-table")),
  );
}

export function segmentsTab(profile, segments) {
  const known = new Map((segments || []).map((sg) => [sg.id, sg]));
  const rows = profile.segments.map((id) => known.get(id) || { id, name: null, scope: null });
  return card(
    "Segments",
    segments === null
      ? h("p", { class: "muted" }, "Segment names could not be loaded; ids only.")
      : null,
    table(
      [
        { label: "Segment", cell: (sg) => sg.name || sg.id, class: "person-name" },
        { label: "Id", cell: (sg) => sg.id, class: "mono" },
        { label: "Scope", cell: (sg) => sg.scope || "—" },
        { label: "Members", cell: (sg) => fmtNumber(sg.members), class: "num" },
      ],
      rows,
      {
        rowTestid: "segment-row",
        rowAttrs: (sg) => ({ "data-segment-id": sg.id }),
        emptyText: "Not in any segment.",
      },
    ),
  );
}

export function companyUsersTab(app, rows) {
  return card(
    "Members",
    h("p", { class: "muted" }, "Excluded members are listed but not counted."),
    table(
      [
        {
          label: "User",
          cell: (u) => personLink(href.user(app, u.user_id), "user-link", u.name, u.user_id),
        },
        { label: "Email", cell: (u) => u.email || "—", class: "wrap" },
        { label: "Last seen", cell: (u) => ago(u.last_seen_at) },
        { label: "Sessions", cell: (u) => fmtNumber(u.total_sessions), class: "num" },
        {
          label: "",
          cell: (u) => (u.excluded ? badge("Excluded", "warn", "excluded-badge") : ""),
        },
      ],
      rows,
      {
        rowTestid: "company-user-row",
        rowAttrs: (u) => ({ "data-user-id": u.user_id }),
        testid: "company-users-table",
        emptyText: "No members.",
      },
    ),
  );
}
