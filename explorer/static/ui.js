// Page-level widgets: the error banner, the notice line, the confirmation dialog, tabs and
// the time-period picker.

import { addDays, h, today } from "./dom.js";

// ---- error banner and notice --------------------------------------------------------------

export function showError(message) {
  const banner = document.getElementById("banner");
  banner.querySelector("[data-role=text]").textContent = message;
  banner.hidden = false;
}

export function clearError() {
  document.getElementById("banner").hidden = true;
}

let noticeTimer = null;
let noticeAt = 0;

/** A short status line; `sticky` keeps it until the next one. */
export function notify(message, { sticky = false } = {}) {
  const notice = document.getElementById("notice");
  notice.querySelector("[data-role=text]").textContent = message;
  notice.hidden = false;
  noticeAt = Date.now();
  clearTimeout(noticeTimer);
  if (!sticky) noticeTimer = setTimeout(() => (notice.hidden = true), 8000);
}

/** Hides the notice; with `olderThan` (ms), only one shown longer ago than that (a page
 * change keeps the notice its own navigation came with, e.g. "user deleted"). */
export function clearNotice(olderThan = 0) {
  if (Date.now() - noticeAt >= olderThan) document.getElementById("notice").hidden = true;
}

// ---- confirmation dialog (in the page, so tests can drive it) -----------------------------

/** Resolves {ok, reason}; `withReason` adds an optional free-text reason. */
// `withReason`: a text field for an optional reason; `input`: one of its own ({placeholder,
// testid}). Its trimmed text comes back as `reason` (null when empty).
export function confirmDialog({
  title,
  message,
  okLabel,
  danger = false,
  withReason = false,
  input = null,
}) {
  const root = document.getElementById("modal-root");
  const field = input || (withReason ? { placeholder: "Reason (optional)", testid: "confirm-reason" } : null);
  return new Promise((resolve) => {
    const reason = field
      ? h("input", {
          class: "input",
          type: "text",
          placeholder: field.placeholder,
          maxlength: 256,
          testid: field.testid,
        })
      : null;
    const close = (ok) => {
      document.removeEventListener("keydown", onKey);
      root.replaceChildren();
      resolve({ ok, reason: reason && reason.value.trim() ? reason.value.trim() : null });
    };
    const onKey = (event) => {
      if (event.key === "Escape") close(false);
    };
    const cancel = h(
      "button",
      { class: "btn", type: "button", testid: "confirm-cancel", onclick: () => close(false) },
      "Cancel",
    );
    const dialog = h(
      "div",
      {
        class: "modal",
        role: "dialog",
        "aria-modal": "true",
        "aria-labelledby": "modal-title",
        testid: "confirm-dialog",
      },
      h("h2", { id: "modal-title" }, title),
      h("p", { testid: "confirm-message" }, message),
      reason,
      h(
        "div",
        { class: "modal-actions" },
        cancel,
        h(
          "button",
          {
            class: danger ? "btn btn-danger" : "btn btn-primary",
            type: "button",
            testid: "confirm-ok",
            onclick: () => close(true),
          },
          okLabel,
        ),
      ),
    );
    const backdrop = h("div", {
      class: "backdrop",
      onclick: (event) => event.target === backdrop && close(false),
    });
    backdrop.appendChild(dialog);
    root.replaceChildren(backdrop);
    document.addEventListener("keydown", onKey);
    (reason || cancel).focus();
  });
}

// ---- tabs ---------------------------------------------------------------------------------

/** Tab links; `href(tab)` builds each link, `current` is highlighted. */
export function tabs(list, current, href) {
  return h(
    "nav",
    { class: "tabs", role: "tablist" },
    list.map(([id, label]) =>
      h(
        "a",
        {
          class: id === current ? "tab active" : "tab",
          href: href(id),
          role: "tab",
          "aria-selected": id === current ? "true" : "false",
          testid: `tab-${id}`,
        },
        label,
      ),
    ),
  );
}

// ---- time period --------------------------------------------------------------------------

export const PERIODS = [
  ["7d", "Last 7 days"],
  ["30d", "Last 30 days"],
  ["all", "All time"],
  ["custom", "Custom range"],
];
export const DEFAULT_PERIOD = "30d";

/** The period of the route's query: {kind, from, to} with from/to as UTC days or null. */
export function periodOf(query) {
  const kind = PERIODS.some(([id]) => id === query.get("period"))
    ? query.get("period")
    : DEFAULT_PERIOD;
  const day = (v) => (/^\d{4}-\d{2}-\d{2}$/.test(v || "") ? v : null);
  if (kind === "7d") return { kind, from: addDays(today(), -6), to: today() };
  if (kind === "30d") return { kind, from: addDays(today(), -29), to: today() };
  if (kind === "custom") return { kind, from: day(query.get("from")), to: day(query.get("to")) };
  return { kind, from: null, to: null };
}

/** The period in words, as a tab's figures cover it: "Last 30 days (2026-11-04 – 2026-12-03)",
 * "All time", "Custom range (from 2026-11-10)". UTC days, as the API's. */
export function periodLabel(period) {
  if (period.kind === "all" || !(period.from || period.to)) return "All time";
  const name = PERIODS.find(([id]) => id === period.kind)[1];
  if (period.from && period.to) return `${name} (${period.from} – ${period.to})`;
  if (period.from) return `${name} (from ${period.from})`;
  return period.to ? `${name} (until ${period.to})` : name;
}

/** Writes the period into a route query (the inverse of periodOf). */
export function setPeriod(query, period) {
  query.set("period", period.kind);
  query.delete("from");
  query.delete("to");
  if (period.kind === "custom") {
    if (period.from) query.set("from", period.from);
    if (period.to) query.set("to", period.to);
  }
}

/** Select + custom from/to inputs; calls onChange({kind, from, to}) when a period is chosen
 * (a custom one with its Apply button). */
export function periodPicker(period, onChange) {
  const custom = period.kind === "custom";
  const dateInput = (value, testid, label) =>
    h("input", {
      class: "input input-date",
      type: "date",
      value: value || "",
      max: today(),
      testid,
      "aria-label": label,
    });
  const from = dateInput(period.from, "period-from", "From (UTC day)");
  const to = dateInput(period.to, "period-to", "To (UTC day)");
  const problem = h("span", { class: "field-error", testid: "period-error" });
  const apply = h(
    "button",
    { class: "btn", type: "button", testid: "period-apply" },
    "Apply",
  );
  const customBox = h(
    "span",
    { class: "custom-range", hidden: !custom },
    from,
    "–",
    to,
    apply,
    problem,
  );
  const select = h(
    "select",
    { class: "select", testid: "period-select", "aria-label": "Time period" },
    PERIODS.map(([id, label]) => h("option", { value: id, selected: id === period.kind }, label)),
  );
  apply.addEventListener("click", () => {
    problem.textContent = "";
    if (!from.value && !to.value) {
      problem.textContent = "pick a day";
    } else if (from.value && to.value && from.value > to.value) {
      problem.textContent = "“from” is after “to”";
    } else {
      onChange({ kind: "custom", from: from.value || null, to: to.value || null });
    }
  });
  select.addEventListener("change", () => {
    if (select.value === "custom") {
      // Start from the period shown; nothing changes until Apply.
      customBox.hidden = false;
      from.value = period.from || addDays(today(), -13);
      to.value = period.to || today();
      from.focus();
    } else {
      onChange(periodOf(new URLSearchParams({ period: select.value })));
    }
  });
  return h(
    "div",
    { class: "period" },
    select,
    customBox,
    h(
      "span",
      {
        class: "muted period-range",
        testid: "period-range",
        "data-from": period.from || "",
        "data-to": period.to || "",
      },
      "Figures for ",
      h("strong", { class: "period-label", testid: "period-label" }, periodLabel(period)),
      ", UTC days",
    ),
  );
}

// ---- links --------------------------------------------------------------------------------

const enc = encodeURIComponent;

function withQuery(path, query) {
  const qs = query ? new URLSearchParams(query).toString() : "";
  return qs ? `${path}?${qs}` : path;
}

/** Hash routes of the page; every id is escaped as one path segment. */
export const href = {
  users: (app, query) => withQuery(`#/apps/${enc(app)}/users`, query),
  user: (app, id, query) => withQuery(`#/apps/${enc(app)}/users/${enc(id)}`, query),
  companies: (app, query) => withQuery(`#/apps/${enc(app)}/companies`, query),
  company: (app, id, query) => withQuery(`#/apps/${enc(app)}/companies/${enc(id)}`, query),
};
