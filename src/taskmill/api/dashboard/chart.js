// The throughput chart: stacked bars (completed, failed) and a line (retried) per bucket,
// drawn as inline SVG at the container's width. Colours come from style.css.

import { s } from "./dom.js";
import { clock, count, time } from "./format.js";

const HEIGHT = 200;
const MARGIN = { top: 12, right: 8, bottom: 24, left: 40 };
const LABEL_STEPS_S = [60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600];

const GRID_LINES = 4;

/** The top of the y axis: four gridlines at round steps (1, 2 or 5 times a power of ten). */
function niceMax(peak) {
  const rough = Math.max(1, peak / GRID_LINES);
  const magnitude = 10 ** Math.floor(Math.log10(rough));
  const step = [1, 2, 5, 10].map((m) => m * magnitude).find((st) => st >= rough);
  return step * GRID_LINES;
}

/** Bucket indexes to label: on round wall-clock times, at most `most` of them. */
function labelled(buckets, bucketS, most) {
  const span = buckets.length * bucketS;
  const step = LABEL_STEPS_S.find((st) => st >= bucketS && span / st <= most) || span;
  const picked = [];
  buckets.forEach((b, i) => {
    const t = Math.round(new Date(b.start).getTime() / 1000);
    if (t % step === 0) picked.push(i);
  });
  return picked;
}

export function totals(history) {
  const sum = { completed: 0, failed: 0, retried: 0 };
  for (const b of history.buckets) {
    sum.completed += b.completed;
    sum.failed += b.failed;
    sum.retried += b.retried;
  }
  return sum;
}

/** An <svg> of `history` (GET /api/stats/history), `width` px wide. */
export function throughputChart(history, width) {
  const w = Math.max(260, Math.floor(width));
  const plotW = w - MARGIN.left - MARGIN.right;
  const plotH = HEIGHT - MARGIN.top - MARGIN.bottom;
  const buckets = history.buckets;
  const n = Math.max(1, buckets.length);
  const band = plotW / n;
  const barW = Math.max(1, Math.min(band * 0.72, band - 1));
  const peak = Math.max(0, ...buckets.map((b) => Math.max(b.completed + b.failed, b.retried)));
  const yMax = niceMax(peak);
  const y = (v) => MARGIN.top + plotH - (v / yMax) * plotH;
  const sum = totals(history);

  const svg = s("svg", {
    class: "chart", width: w, height: HEIGHT, viewBox: `0 0 ${w} ${HEIGHT}`, role: "img",
    "aria-label": `Throughput over the last ${history.minutes} minutes: ${sum.completed} completed, ${sum.failed} failed, ${sum.retried} retried`,
  });

  const grid = s("g", { class: "grid", "aria-hidden": "true" });
  for (let i = 0; i <= GRID_LINES; i += 1) {
    const value = (yMax / GRID_LINES) * i;
    const gy = Math.round(y(value)) + 0.5;
    grid.append(
      s("line", { x1: MARGIN.left, x2: w - MARGIN.right, y1: gy, y2: gy, class: i === 0 ? "axis" : "" }),
      s("text", { x: MARGIN.left - 6, y: gy + 4, "text-anchor": "end" }, count(value)),
    );
  }
  const most = w < 480 ? 3 : 6;
  for (const i of labelled(buckets, history.bucket_s, most)) {
    const x = MARGIN.left + i * band;
    grid.append(
      s("line", { x1: x, x2: x, y1: MARGIN.top + plotH, y2: MARGIN.top + plotH + 4, class: "axis" }),
      s("text", { x, y: HEIGHT - 6, "text-anchor": "middle" }, clock(new Date(buckets[i].start))),
    );
  }
  svg.append(grid);

  const bars = s("g", { class: "bars" });
  buckets.forEach((b, i) => {
    const x = MARGIN.left + i * band + (band - barW) / 2;
    const start = new Date(b.start);
    const end = new Date(start.getTime() + history.bucket_s * 1000);
    const col = s("g", { class: "col" },
      s("title", {}, `${time(start)}–${time(end)}: ${b.completed} completed, ${b.failed} failed, ${b.retried} retried`),
      s("rect", { class: "hit", x: MARGIN.left + i * band, y: MARGIN.top, width: band, height: plotH }),
    );
    if (b.completed > 0) {
      col.append(s("rect", { class: "bar-completed", x, width: barW, y: y(b.completed), height: y(0) - y(b.completed) }));
    }
    if (b.failed > 0) {
      const top = b.completed + b.failed;
      col.append(s("rect", { class: "bar-failed", x, width: barW, y: y(top), height: y(b.completed) - y(top) }));
    }
    bars.append(col);
  });
  svg.append(bars);

  if (sum.retried > 0) {
    const cx = (i) => MARGIN.left + i * band + band / 2;
    const line = s("g", { class: "retried", "aria-hidden": "true" });
    // Segments only where there were retries: a line lying on the axis would read as noise.
    buckets.forEach((b, i) => {
      const next = buckets[i + 1];
      if (next && (b.retried > 0 || next.retried > 0)) {
        line.append(s("line", { x1: cx(i), y1: y(b.retried), x2: cx(i + 1), y2: y(next.retried) }));
      }
      if (b.retried > 0) line.append(s("circle", { cx: cx(i), cy: y(b.retried), r: 2.5 }));
    });
    svg.append(line);
  }

  if (sum.completed + sum.failed + sum.retried === 0) {
    svg.append(s("text", { class: "empty", x: MARGIN.left + plotW / 2, y: MARGIN.top + plotH / 2, "text-anchor": "middle" },
      `No job finished in the last ${history.minutes} minutes`));
  }
  return svg;
}
