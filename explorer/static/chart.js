// The events-and-sessions-per-day chart, drawn as inline SVG: events as bars on the left axis,
// sessions as a line on the right axis (their scales differ by an order of magnitude).

import { h, s } from "./dom.js";

const W = 960;
const H = 280;
const M = { left: 52, right: 52, top: 14, bottom: 46 };

/** Ticks from 0 to a round maximum at or above `max`, about four steps, integers only. */
function ticks(max) {
  if (max <= 0) return [0, 1];
  const rough = max / 4;
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

/** days: [{day, events, sessions}], oldest first (the API's /daily answer). */
export function dailyChart(days) {
  const totalEvents = days.reduce((sum, d) => sum + d.events, 0);
  const totalSessions = days.reduce((sum, d) => sum + d.sessions, 0);
  const legend = h(
    "div",
    { class: "chart-legend", testid: "chart-legend" },
    h("span", { class: "legend-item" }, h("i", { class: "swatch swatch-events" }), "Events"),
    h("span", { class: "legend-item" }, h("i", { class: "swatch swatch-sessions" }), "Sessions"),
  );
  const attrs = {
    testid: "chart",
    "data-days": days.length,
    "data-events": totalEvents,
    "data-sessions": totalSessions,
  };
  if (!days.length) {
    return h(
      "div",
      { class: "chart" },
      legend,
      h("div", { class: "empty", ...attrs }, "No activity in this period."),
    );
  }

  const plotW = W - M.left - M.right;
  const plotH = H - M.top - M.bottom;
  const eTicks = ticks(Math.max(...days.map((d) => d.events)));
  const sTicks = ticks(Math.max(...days.map((d) => d.sessions)));
  const eTop = eTicks[eTicks.length - 1];
  const sTop = sTicks[sTicks.length - 1];
  const band = plotW / days.length;
  const x = (i) => M.left + i * band;
  const yE = (v) => M.top + plotH - (v / eTop) * plotH;
  const yS = (v) => M.top + plotH - (v / sTop) * plotH;
  const every = Math.ceil(days.length / 8);

  const grid = eTicks.map((v) =>
    s(
      "g",
      {},
      s("line", { class: "grid", x1: M.left, x2: W - M.right, y1: yE(v), y2: yE(v) }),
      s("text", { class: "tick", x: M.left - 8, y: yE(v) + 4, "text-anchor": "end" }, v),
    ),
  );
  const rightTicks = sTicks.map((v) =>
    s("text", { class: "tick", x: W - M.right + 8, y: yS(v) + 4, "text-anchor": "start" }, v),
  );
  const barW = Math.max(1, Math.min(band * 0.7, 40));
  const bars = days.map((d, i) =>
    s("rect", {
      class: "bar-events",
      x: x(i) + (band - barW) / 2,
      width: barW,
      y: yE(d.events),
      height: Math.max(0, M.top + plotH - yE(d.events)),
    }),
  );
  const points = days.map((d, i) => `${x(i) + band / 2},${yS(d.sessions)}`).join(" ");
  const dots = days.map((d, i) =>
    s("circle", { class: "dot-sessions", cx: x(i) + band / 2, cy: yS(d.sessions), r: 3 }),
  );
  const labels = days.map((d, i) =>
    i % every === 0
      ? s(
          "text",
          { class: "tick", x: x(i) + band / 2, y: M.top + plotH + 18, "text-anchor": "middle" },
          shortDay(d.day),
        )
      : null,
  );
  // One transparent column per day carries the exact figures as a native tooltip.
  const hovers = days.map((d, i) =>
    s(
      "rect",
      { class: "hover", x: x(i), y: M.top, width: band, height: plotH },
      s("title", {}, `${d.day}: ${d.events} events, ${d.sessions} sessions`),
    ),
  );

  const svg = s(
    "svg",
    {
      ...attrs,
      class: "chart-svg",
      viewBox: `0 0 ${W} ${H}`,
      role: "img",
      "aria-label": `Events and sessions per day, ${days[0].day} to ${days[days.length - 1].day}`,
    },
    grid,
    rightTicks,
    s("g", { testid: "chart-events" }, bars),
    s("polyline", { class: "line-sessions", points, testid: "chart-sessions" }),
    dots,
    labels,
    s("line", { class: "axis", x1: M.left, x2: W - M.right, y1: M.top + plotH, y2: M.top + plotH }),
    s(
      "text",
      {
        class: "axis-label",
        transform: `translate(14 ${M.top + plotH / 2}) rotate(-90)`,
        "text-anchor": "middle",
      },
      "Events",
    ),
    s(
      "text",
      {
        class: "axis-label",
        transform: `translate(${W - 12} ${M.top + plotH / 2}) rotate(90)`,
        "text-anchor": "middle",
      },
      "Sessions",
    ),
    s(
      "text",
      { class: "axis-label", x: M.left + plotW / 2, y: H - 6, "text-anchor": "middle" },
      "Day (UTC)",
    ),
    hovers,
  );
  return h("div", { class: "chart" }, legend, svg);
}
