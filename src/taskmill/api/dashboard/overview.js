// Overview: the live counts (from the stats WebSocket), throughput over the last 15
// minutes, and the queues.

import { h, fill, setText, syncRows } from "./dom.js";
import { count, rate, relative } from "./format.js";
import { throughputChart, totals } from "./chart.js";
import { JOB_STATES, emptyState, errorState, panel, poller, viewHead } from "./ui.js";

const HISTORY_EVERY_MS = 5000;
const WORKERS_EVERY_MS = 5000;
const STATE_LABELS = { pending: "Pending", running: "Running", completed: "Completed", failed: "Failed", cancelled: "Cancelled" };

function stateCard(state) {
  const value = h("span", { class: "card-value" }, "–");
  const el = h("a", { class: ["card", `card-${state}`], href: `#/jobs?status=${state}`, dataset: { stat: state } },
    h("span", { class: "card-label" }, h("span", { class: ["dot", `state-${state}`], "aria-hidden": "true" }), STATE_LABELS[state]),
    value);
  return { el, value };
}

export function overviewView(ctx) {
  const cards = Object.fromEntries(JOB_STATES.map((st) => [st, stateCard(st)]));
  const workersValue = h("span", { class: "card-value" }, "–");
  const workersNote = h("span", { class: "card-note" }, "");
  const workersCard = h("a", { class: "card card-workers", href: "#/workers", dataset: { stat: "workers" } },
    h("span", { class: "card-label" }, "Workers online"), workersValue, workersNote);
  const rateValue = h("span", { class: "card-value" }, "–");
  const rateNote = h("span", { class: "card-note" }, "");
  const rateCard = h("div", { class: "card card-rate", dataset: { stat: "throughput" } },
    h("span", { class: "card-label" }, "Jobs / s"), rateValue, rateNote);

  const updated = h("p", { class: "muted updated", "aria-live": "off" }, "");
  const chartBox = h("div", { class: "chart-box" }, emptyState("Loading throughput…"));
  const chartSummary = h("p", { class: "chart-summary muted" }, "");
  const legend = h("ul", { class: "legend", "aria-label": "Legend" },
    h("li", {}, h("span", { class: "swatch swatch-completed", "aria-hidden": "true" }), "completed"),
    h("li", {}, h("span", { class: "swatch swatch-failed", "aria-hidden": "true" }), "failed"),
    h("li", {}, h("span", { class: "swatch swatch-retried", "aria-hidden": "true" }), "retried"));

  const queueRows = h("tbody", {});
  const queueEmpty = h("div", { hidden: true }, emptyState("No jobs yet", ["Submit one from the Submit tab, or ", h("code", {}, "POST /api/tasks"), "."]));
  const queuesTable = h("div", { class: "table-wrap" }, h("table", { class: "table queues" },
    h("caption", { class: "sr-only" }, "Jobs per queue and state"),
    h("thead", {}, h("tr", {},
      h("th", { scope: "col" }, "Queue"),
      ...JOB_STATES.map((st) => h("th", { scope: "col", class: ["num", st === "cancelled" && "wide-only"] }, STATE_LABELS[st])),
      h("th", { scope: "col", class: "num wide-only" }, "Jobs / s"))),
    queueRows));

  const el = h("div", { class: "view view-overview" },
    viewHead("Overview", updated),
    h("div", { class: "cards" }, ...JOB_STATES.map((st) => cards[st].el), workersCard, rateCard),
    panel({ title: "Throughput, last 15 minutes", id: "throughput", actions: legend }, chartBox, chartSummary),
    panel({ title: "Queues", id: "queues" }, queuesTable, queueEmpty));

  let history = null;
  let historyError = null;
  let staleWorkers = 0;
  let pollers = [];
  let resizeObserver = null;
  let lastWidth = 0;

  function drawChart() {
    if (historyError && !history) {
      fill(chartBox, errorState("throughput", historyError));
      return;
    }
    if (!history) return;
    lastWidth = chartBox.clientWidth;
    fill(chartBox, throughputChart(history, lastWidth));
    const sum = totals(history);
    setText(chartSummary, `${count(sum.completed)} completed · ${count(sum.failed)} failed · ${count(sum.retried)} retried in ${history.minutes} minutes (${history.bucket_s} s intervals)`);
  }

  async function loadHistory() {
    try {
      history = await ctx.api.get("/api/stats/history", { minutes: 15, bucket_s: 30 });
      historyError = null;
      setText(rateNote, `${rate(history.rates.completed_per_s)} completed · ${rate(history.rates.failed_per_s)} failed`);
    } catch (error) {
      historyError = error;
    }
    drawChart();
  }

  async function loadWorkers() {
    const found = await ctx.api.get("/api/workers");
    staleWorkers = found.workers.filter((w) => w.stale).length;
    render(ctx.stats);
  }

  function render(stats) {
    if (!stats) return;
    for (const st of JOB_STATES) setText(cards[st].value, count(stats.totals[st]));
    setText(workersValue, count(stats.workers_online));
    setText(workersNote, `${count(stats.worker_slots)} slots${staleWorkers ? ` · ${staleWorkers} stale` : ""}`);
    workersCard.classList.toggle("warn", staleWorkers > 0 || stats.workers_online === 0);
    setText(rateValue, rate(stats.jobs_per_s));
    setText(updated, `Live · updated ${relative(stats.taken_at)}`);
    queueEmpty.hidden = stats.queues.length > 0;
    queuesTable.hidden = stats.queues.length === 0;
    syncRows(queueRows, stats.queues, (q) => q.queue, (q) => {
      const cells = Object.fromEntries([...JOB_STATES, "jobs_per_s"].map((k) => [k, h("td", { class: ["num", ["cancelled", "jobs_per_s"].includes(k) && "wide-only"], dataset: { col: k } })]));
      const row = h("tr", { dataset: { queue: q.queue } },
        h("th", { scope: "row" }, h("a", { href: `#/jobs?queue=${encodeURIComponent(q.queue)}` }, q.queue)),
        ...JOB_STATES.map((k) => cells[k]), cells.jobs_per_s);
      row.cells_ = cells;
      return row;
    }, (row, q) => {
      for (const k of JOB_STATES) setText(row.cells_[k], count(q[k]));
      setText(row.cells_.jobs_per_s, rate(q.jobs_per_s));
      row.cells_.failed.classList.toggle("bad", q.failed > 0);
    });
  }

  return {
    el,
    title: "Overview",
    start() {
      render(ctx.stats);
      pollers = [poller(loadHistory, HISTORY_EVERY_MS), poller(loadWorkers, WORKERS_EVERY_MS)];
      resizeObserver = new ResizeObserver(() => {
        if (Math.abs(chartBox.clientWidth - lastWidth) > 2) drawChart();
      });
      resizeObserver.observe(chartBox);
    },
    stop() {
      pollers.forEach((p) => p.stop());
      pollers = [];
      if (resizeObserver) resizeObserver.disconnect();
    },
    onStats: render,
  };
}
