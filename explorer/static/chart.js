// The events-and-sessions-per-day chart, drawn as inline SVG: two panels over one day axis,
// tracked events as bars above, sessions started as a line below, each on its own scale (their
// scales differ by an order of magnitude, and in one panel the line hid the bars).

import { h, s } from "./dom.js";

const W = 960;
const M = { left: 52, right: 20 };
const EVENTS = { top: 30, height: 150 }; // the events panel
const SESSIONS = { top: 222, height: 70 }; // the sessions panel, below it
const AXIS_Y = SESSIONS.top + SESSIONS.height; // the day labels go under the lower panel
const H = AXIS_Y + 40;

/** Ticks from 0 to a round maximum at or above `max`, about `steps` steps, integers only. */
function ticks(max, steps) {
  if (max <= 0) return [0, 1];
  const rough = max / steps;
  const pow = 10 ** Math.floor(Math.log10(rough));
  const step = Math.max(1, [1, 2, 5, 10].find((m) => m * pow >= rough) * pow);
  const out = [];
  for (let v = 0; v < max + step; v += step) out.push(v);
  return out;
}

function shortDay(day) {
  const d = new Date(`${day}T00:00:00Z`);
  return d.toLocaleDateString("en-US", { month: "short", day: "numeric", timeZone: "UTC" });
}

/** One panel's frame: its title, grid lines and left-axis ticks, its base line. */
function frame(panel, title, kind, top, testid) {
  const plotRight = W - M.right;
  const y = (v) => panel.top + panel.height - (v / top.at(-1)) * panel.height;
  return {
    y,
    node: s(
      "g",
      { testid, class: `axis axis-${kind}` },
      s("text", { class: `panel-title panel-title-${kind}`, x: M.left, y: panel.top - 12 }, title),
      top.map((v) =>
        s(
          "g",
          {},
          s("line", { class: "grid", x1: M.left, x2: plotRight, y1: y(v), y2: y(v) }),
          s("text", { class: "tick", x: M.left - 8, y: y(v) + 4, "text-anchor": "end" }, v),
        ),
      ),
      s("line", { class: "baseline", x1: M.left, x2: plotRight, y1: y(0), y2: y(0) }),
    ),
  };
}

/** days: [{day, events, sessions}], oldest first (the API's /daily answer). */
export function dailyChart(days) {
  const totalEvents = days.reduce((sum, d) => sum + d.events, 0);
  const totalSessions = days.reduce((sum, d) => sum + d.sessions, 0);
  const attrs = {
    testid: "chart",
    "data-days": days.length,
    "data-events": totalEvents,
    "data-sessions": totalSessions,
  };
  if (!days.length) {
    const none = h("div", { class: "empty", ...attrs }, "No activity in this period.");
    return h("div", { class: "chart" }, none);
  }

  const plotW = W - M.left - M.right;
  const band = plotW / days.length;
  const x = (i) => M.left + i * band;
  const mid = (i) => x(i) + band / 2;
  const every = Math.ceil(days.length / 8);
  const events = frame(
    EVENTS,
    "Tracked events per day",
    "events",
    ticks(Math.max(...days.map((d) => d.events)), 4),
    "axis-events",
  );
  const sessions = frame(
    SESSIONS,
    "Sessions started per day",
    "sessions",
    ticks(Math.max(...days.map((d) => d.sessions)), 2),
    "axis-sessions",
  );

  const barW = Math.max(1, Math.min(band * 0.7, 40));
  const bars = days.map((d, i) =>
    s("rect", {
      class: "bar-events",
      x: x(i) + (band - barW) / 2,
      width: barW,
      y: events.y(d.events),
      height: Math.max(0, events.y(0) - events.y(d.events)),
    }),
  );
  const points = days.map((d, i) => `${mid(i)},${sessions.y(d.sessions)}`);
  const base = sessions.y(0);
  const area = `${mid(0)},${base} ${points.join(" ")} ${mid(days.length - 1)},${base}`;
  const dots = days.map((d, i) =>
    s("circle", { class: "dot-sessions", cx: mid(i), cy: sessions.y(d.sessions), r: 3 }),
  );
  const labels = days.map((d, i) =>
    i % every === 0
      ? s(
          "text",
          { class: "tick", x: mid(i), y: AXIS_Y + 18, "text-anchor": "middle" },
          shortDay(d.day),
        )
      : null,
  );
  // One transparent column per day, over both panels, carries the exact figures as a tooltip.
  const hovers = days.map((d, i) =>
    s(
      "rect",
      { class: "hover", x: x(i), y: EVENTS.top, width: band, height: AXIS_Y - EVENTS.top },
      s("title", {}, `${d.day}: ${d.events} tracked events, ${d.sessions} sessions started`),
    ),
  );

  const svg = s(
    "svg",
    {
      ...attrs,
      class: "chart-svg",
      viewBox: `0 0 ${W} ${H}`,
      role: "img",
      "aria-label": `Tracked events and sessions started per day, ${days[0].day} to ${
        days.at(-1).day
      }`,
    },
    events.node,
    sessions.node,
    s("g", { testid: "chart-events" }, bars),
    s(
      "g",
      { testid: "chart-sessions" },
      s("polygon", { class: "area-sessions", points: area }),
      s("polyline", { class: "line-sessions", points: points.join(" ") }),
      dots,
    ),
    labels,
    s(
      "text",
      { class: "axis-label", x: M.left + plotW / 2, y: H - 6, "text-anchor": "middle" },
      "Day (UTC)",
    ),
    hovers,
  );
  return h("div", { class: "chart" }, svg);
}
