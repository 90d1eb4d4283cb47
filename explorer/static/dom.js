// DOM building and formatting helpers: every text goes in as a text node, never as HTML.

const SVG_NS = "http://www.w3.org/2000/svg";

function build(el, attrs, children) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2), value);
    } else if (key === "value" || key === "checked" || key === "selected") {
      el[key] = value;
    } else if (key === "testid") {
      el.setAttribute("data-testid", value);
    } else {
      el.setAttribute(key, value === true ? "" : String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else if (child instanceof Node) el.appendChild(child);
    else el.appendChild(document.createTextNode(String(child)));
  }
}

/** An HTML element: h("a", {href, class, testid, onclick}, "text", childNode, [more]). */
export function h(tag, attrs, ...children) {
  return build(document.createElement(tag), attrs, children);
}

/** An SVG element, same conventions as h(). */
export function s(tag, attrs, ...children) {
  return build(document.createElementNS(SVG_NS, tag), attrs, children);
}

// ---- formatting ---------------------------------------------------------------------------

const numbers = new Intl.NumberFormat("en-US");

export function fmtNumber(n) {
  return n === null || n === undefined ? "—" : numbers.format(n);
}

/** Seconds as "42s", "3m 12s", "1h 05m". */
export function fmtDuration(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  const total = Math.round(seconds);
  if (total < 60) return `${total}s`;
  const m = Math.floor(total / 60);
  if (m < 60) return `${m}m ${String(total % 60).padStart(2, "0")}s`;
  return `${Math.floor(m / 60)}h ${String(m % 60).padStart(2, "0")}m`;
}

/** An RFC 3339 timestamp as "2026-11-28 14:03 UTC" (the API's days are UTC days too). */
export function fmtTime(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  return `${d.toISOString().slice(0, 16).replace("T", " ")} UTC`;
}

/** The time of day of an RFC 3339 timestamp, to the second: "14:03:27" (UTC). */
export function fmtClock(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : d.toISOString().slice(11, 19);
}

export function fmtDate(iso) {
  return iso ? fmtTime(iso).slice(0, 10) : "—";
}

/** "just now", "5 min ago", "3 h ago", "12 days ago". */
export function fmtAgo(iso) {
  if (!iso) return "never";
  const ms = Date.now() - new Date(iso).getTime();
  if (Number.isNaN(ms)) return iso;
  const min = Math.round(ms / 60000);
  if (min < 1) return "just now";
  if (min < 60) return `${min} min ago`;
  const hours = Math.round(min / 60);
  if (hours < 24) return `${hours} h ago`;
  const days = Math.round(hours / 24);
  return days === 1 ? "yesterday" : `${days} days ago`;
}

/** A relative time with the exact one as its tooltip. */
export function ago(iso) {
  return h("time", { datetime: iso || null, title: iso ? fmtTime(iso) : null }, fmtAgo(iso));
}

export function initials(name, fallback) {
  const words = String(name || fallback || "?").trim().split(/\s+/).filter(Boolean);
  const letters = words.slice(0, 2).map((w) => Array.from(w)[0]);
  return (letters.join("") || "?").toUpperCase();
}

/** A property value of any JSON type as text. */
export function fmtValue(value) {
  if (value === null || value === undefined) return "null";
  return typeof value === "string" ? value : JSON.stringify(value);
}

// ---- UTC days -----------------------------------------------------------------------------

export function today() {
  return new Date().toISOString().slice(0, 10);
}

export function addDays(day, n) {
  const d = new Date(`${day}T00:00:00Z`);
  d.setUTCDate(d.getUTCDate() + n);
  return d.toISOString().slice(0, 10);
}

// ---- small shared widgets -----------------------------------------------------------------

export function badge(text, kind, testid) {
  return h("span", { class: `badge badge-${kind || "neutral"}`, testid }, text);
}

export function empty(text) {
  return h("div", { class: "empty" }, text);
}

export function loading() {
  return h("div", { class: "loading", testid: "loading" }, "Loading…");
}

/** A link to a user or company: avatar with initials, then name and id (`square` for a company). */
export function personLink(href, testid, name, id, square = false) {
  const avatar = square ? "avatar avatar-sm avatar-square" : "avatar avatar-sm";
  return h(
    "a",
    { class: "person", href, testid },
    h("span", { class: avatar }, initials(name, id)),
    h(
      "span",
      { class: "person-text" },
      h("span", { class: "person-name" }, name || id),
      h("span", { class: "mono muted" }, id),
    ),
  );
}

/** A table: columns [{label, cell(row) -> node|text, class}], with a testid per row. */
export function table(columns, rows, { rowTestid, rowAttrs, testid, emptyText } = {}) {
  if (!rows.length) return empty(emptyText || "Nothing here yet.");
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      { class: "table", testid },
      h("thead", {}, h("tr", {}, columns.map((c) => h("th", { class: c.class }, c.label)))),
      h(
        "tbody",
        {},
        rows.map((row) =>
          h(
            "tr",
            { testid: rowTestid, ...(rowAttrs ? rowAttrs(row) : {}) },
            columns.map((c) => h("td", { class: c.class }, c.cell(row))),
          ),
        ),
      ),
    ),
  );
}

/** Calls fn after `ms` of quiet. */
export function debounce(fn, ms) {
  let timer = null;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}
