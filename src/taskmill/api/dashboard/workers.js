// Workers: every worker with its queues, capacity and current jobs. A worker whose
// heartbeat stopped is shown as stale (its jobs return to pending when their lease ends),
// never silently dropped.

import { h, fill, fillIfChanged, setText, syncRows } from "./dom.js";
import { absolute, age, count, relative, shortId } from "./format.js";
import { jobHref } from "./jobs.js";
import { badge, emptyState, errorState, panel, poller, viewHead } from "./ui.js";

const EVERY_MS = 3000;

function currentJobs(worker) {
  if (worker.running === 0) return h("span", { class: "muted" }, "idle");
  const items = worker.current_jobs.map((job) => h("li", {},
    h("a", { href: jobHref(job.id), title: job.id }, job.task),
    " ", h("span", { class: "muted mono" }, shortId(job.id)),
    typeof job.progress === "number" ? h("span", { class: "muted" }, ` ${Math.round(job.progress * 100)} %`) : null));
  const more = worker.running - worker.current_jobs.length;
  return h("div", {},
    h("ul", { class: "job-list" }, items),
    more > 0 ? h("p", { class: "muted" }, `and ${count(more)} more`) : null);
}

function heartbeat(worker, leaseS) {
  const text = `${age(worker.heartbeat_age_s)} ago`;
  if (worker.state === "stale") {
    return h("span", { class: "warn-text", title: `No heartbeat for longer than the ${leaseS} s lease` }, `silent for ${age(worker.heartbeat_age_s)}`);
  }
  if (worker.state === "stopped") return h("span", { title: absolute(worker.stopped_at) }, `stopped ${relative(worker.stopped_at)}`);
  return h("span", { title: absolute(worker.heartbeat_at) }, text);
}

const COLUMNS = ["state", "host", "pid", "queues", "running", "jobs", "heartbeat", "started"];

function createRow(worker) {
  const cells = {};
  for (const col of COLUMNS) {
    cells[col] = h(col === "host" ? "th" : "td", {
      scope: col === "host" ? "row" : null,
      class: [["pid", "running"].includes(col) && "num", col === "started" && "wide-only"],
      dataset: { col },
      "data-label": { pid: "pid", queues: "queues", heartbeat: "heartbeat" }[col] || null, // narrow screens
    });
  }
  const row = h("tr", { dataset: { worker: worker.id } }, COLUMNS.map((c) => cells[c]));
  row.cells_ = cells;
  return row;
}

function updateRow(row, worker, leaseS) {
  const c = row.cells_;
  row.className = `worker-${worker.state}`;
  row.dataset.state = worker.state;
  fillIfChanged(c.state, worker.state, () => badge(worker.state));
  fillIfChanged(c.host, worker.id, () => [h("span", { class: "host" }, worker.host), h("span", { class: "muted mono sub" }, worker.id)]);
  setText(c.pid, worker.pid);
  fillIfChanged(c.queues, worker.queues || [], () => (worker.queues ? worker.queues.join(", ") : h("span", { class: "muted" }, "all")));
  setText(c.running, `${count(worker.running)} / ${count(worker.concurrency)}`);
  fillIfChanged(c.jobs, [worker.running, worker.current_jobs], () => currentJobs(worker));
  fillIfChanged(c.heartbeat, [worker.state, Math.floor(worker.heartbeat_age_s), worker.stopped_at], () => heartbeat(worker, leaseS));
  c.started.title = absolute(worker.started_at);
  setText(c.started, relative(worker.started_at));
}

export function workersView(ctx) {
  const summary = h("p", { class: "muted" }, "");
  const body = h("div", {}, emptyState("Loading workers…"));
  const el = h("div", { class: "view view-workers" },
    viewHead("Workers", summary),
    panel({ title: "Online, stale and recently stopped", id: "workers" }, body));
  const rows = h("tbody", {});
  const table = h("div", { class: "table-wrap" }, h("table", { class: "table workers stack" },
    h("caption", { class: "sr-only" }, "Workers"),
    h("thead", {}, h("tr", {},
      h("th", { scope: "col" }, "State"), h("th", { scope: "col" }, "Host"),
      h("th", { scope: "col", class: "num" }, "PID"), h("th", { scope: "col" }, "Queues"),
      h("th", { scope: "col", class: "num" }, "Running"), h("th", { scope: "col" }, "Current jobs"),
      h("th", { scope: "col" }, "Heartbeat"), h("th", { scope: "col", class: "wide-only" }, "Started"))),
    rows));
  let timer = null;

  async function load() {
    let found;
    try {
      found = await ctx.api.get("/api/workers");
    } catch (error) {
      fill(body, errorState("workers", error));
      return;
    }
    const by = (st) => found.workers.filter((w) => w.state === st).length;
    setText(summary, `${count(by("online"))} online · ${count(by("stale"))} stale · ${count(by("stopped"))} stopped recently. Stale: no heartbeat for more than the ${found.lease_s} s lease.`);
    if (found.workers.length === 0) {
      fill(body, emptyState("No workers", ["Start one with ", h("code", {}, "taskmill worker"), " (or ", h("code", {}, "taskmill up"), "); jobs wait as pending until one runs them."]));
      return;
    }
    if (!table.isConnected) fill(body, table);
    syncRows(rows, found.workers, (w) => w.id, createRow, (row, w) => updateRow(row, w, found.lease_s));
  }

  return {
    el,
    title: "Workers",
    start() {
      timer = poller(load, EVERY_MS);
    },
    stop() {
      if (timer) timer.stop();
    },
  };
}
