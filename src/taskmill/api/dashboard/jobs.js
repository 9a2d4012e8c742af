// Jobs: newest first, filtered by state, queue and task, a page at a time (cursor); and a
// job's detail with Cancel and Retry.

import { h, fill, fillIfChanged, setText, syncRows } from "./dom.js";
import { absolute, duration, json, relative, shortId } from "./format.js";
import { JOB_STATES, emptyState, errorState, field, jobBadge, panel, poller, progressBar, select, setOptions, viewHead } from "./ui.js";

const PAGE_SIZE = 25;
const LIST_EVERY_MS = 4000;
const DETAIL_EVERY_MS = 1000; // while the job can still change
const COLUMNS = ["status", "task", "id", "queue", "priority", "attempts", "created", "duration"];

export function jobHref(id) {
  return `#/jobs/${encodeURIComponent(id)}`;
}

function filtersHash(filters) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(filters)) if (v) q.set(k, v);
  const qs = q.toString();
  return qs ? `#/jobs?${qs}` : "#/jobs";
}

function attemptsText(job) {
  return `${job.attempts} / ${job.max_retries + 1}`;
}

function createJobRow(job) {
  const cells = {};
  for (const col of COLUMNS) {
    cells[col] = h(col === "task" ? "th" : "td", {
      scope: col === "task" ? "row" : null,
      class: [["priority", "attempts", "duration"].includes(col) && "num", ["queue", "priority", "duration"].includes(col) && "wide-only", col === "id" && "mono"],
      dataset: { col },
      "data-label": col === "attempts" ? "attempts" : null, // shown on narrow screens only
    });
  }
  const row = h("tr", { dataset: { job: job.id } }, COLUMNS.map((c) => cells[c]));
  row.cells_ = cells;
  return row;
}

function updateJobRow(row, job) {
  const c = row.cells_;
  row.dataset.status = job.status;
  const due = job.status === "pending" && Date.parse(job.scheduled_at) > Date.now() + 1000 ? relative(job.scheduled_at) : "";
  fillIfChanged(c.status, [job.status, job.cancel_requested, due], () => [
    jobBadge(job),
    due ? h("span", { class: "muted due", title: `Scheduled for ${absolute(job.scheduled_at)}` }, ` ${due}`) : null,
  ]);
  fillIfChanged(c.task, job.task, () => h("a", { href: jobHref(job.id) }, job.task));
  c.id.title = job.id;
  setText(c.id, shortId(job.id));
  setText(c.queue, job.queue);
  setText(c.priority, job.priority);
  setText(c.attempts, attemptsText(job));
  c.created.title = absolute(job.created_at);
  setText(c.created, relative(job.created_at));
  setText(c.duration, duration(job.duration_s));
}

export function jobsView(ctx) {
  const status = select({ name: "status" }, [["", "Any state"], ...JOB_STATES]);
  const queue = h("input", { name: "queue", type: "text", list: "queue-names", placeholder: "Any queue", autocomplete: "off", spellcheck: "false" });
  const queueNames = h("datalist", { id: "queue-names" });
  const task = select({ name: "task" }, [["", "Any task"]]);
  const reset = h("button", { type: "button", class: "button subtle" }, "Clear filters");
  const form = h("form", { class: "filters", role: "search", "aria-label": "Filter jobs" },
    field("State", status), field("Queue", queue), queueNames, field("Task", task),
    h("div", { class: "field field-button" }, reset));

  const rows = h("tbody", {});
  const table = h("div", { class: "table-wrap" }, h("table", { class: "table jobs stack" },
    h("caption", { class: "sr-only" }, "Jobs, newest first"),
    h("thead", {}, h("tr", {},
      h("th", { scope: "col" }, "State"), h("th", { scope: "col" }, "Task"), h("th", { scope: "col" }, "Job"),
      h("th", { scope: "col", class: "wide-only" }, "Queue"), h("th", { scope: "col", class: "num wide-only" }, "Priority"),
      h("th", { scope: "col", class: "num" }, "Attempts"), h("th", { scope: "col" }, "Created"),
      h("th", { scope: "col", class: "num wide-only" }, "Duration"))),
    rows));
  const body = h("div", {}, emptyState("Loading jobs…"));
  const newest = h("button", { type: "button", class: "button subtle" }, "Newest");
  const newer = h("button", { type: "button", class: "button" }, "‹ Newer");
  const older = h("button", { type: "button", class: "button" }, "Older ›");
  const pageInfo = h("span", { class: "muted", "aria-live": "polite" }, "");
  const pager = h("nav", { class: "pager", "aria-label": "Pages" }, newest, newer, pageInfo, older);
  const el = h("div", { class: "view view-jobs" },
    viewHead("Jobs"),
    panel({ title: "Newest first", id: "jobs-list", actions: form }, body, pager));

  let filters = {};
  let cursors = [null]; // cursors[i] opens page i; the first page has none
  let page = 0;
  let nextCursor = null;
  let timer = null;
  let epoch = 0; // bumped by start(): answers to an older start() are dropped

  function go(next) {
    window.location.hash = filtersHash(next);
  }

  status.addEventListener("change", () => go({ ...filters, status: status.value }));
  task.addEventListener("change", () => go({ ...filters, task: task.value }));
  queue.addEventListener("change", () => go({ ...filters, queue: queue.value.trim() }));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    go({ ...filters, queue: queue.value.trim() });
  });
  reset.addEventListener("click", () => go({}));
  newest.addEventListener("click", () => {
    page = 0;
    timer.now();
  });
  newer.addEventListener("click", () => {
    page = Math.max(0, page - 1);
    timer.now();
  });
  older.addEventListener("click", () => {
    if (!nextCursor) return;
    cursors[page + 1] = nextCursor;
    page += 1;
    timer.now();
  });

  async function load() {
    const asked = epoch;
    let found;
    try {
      found = await ctx.api.get("/api/tasks", { ...filters, limit: PAGE_SIZE, cursor: cursors[page] });
    } catch (error) {
      if (asked === epoch) fill(body, errorState("jobs", error));
      return;
    }
    if (asked !== epoch) return;
    nextCursor = found.next_cursor;
    older.disabled = !nextCursor;
    newest.disabled = page === 0;
    newer.disabled = page === 0;
    setText(pageInfo, page === 0 ? "Newest page · live" : `Page ${page + 1}`);
    if (found.jobs.length === 0) {
      const filtered = Object.values(filters).some(Boolean);
      fill(body, emptyState(filtered ? "No job matches these filters" : "No jobs yet", filtered ? "Clear the filters to see every job." : ["Submit one from the Submit tab, or ", h("code", {}, "POST /api/tasks"), "."]));
      return;
    }
    if (!table.isConnected) fill(body, table);
    syncRows(rows, found.jobs, (j) => j.id, createJobRow, updateJobRow);
  }

  async function loadChoices() {
    try {
      const types = await ctx.taskTypes();
      setOptions(task, [["", "Any task"], ...types.map((t) => t.name)], filters.task || "");
    } catch {
      // the filter still works by URL; the list of tasks is a convenience
    }
    const names = ctx.stats ? ctx.stats.queues.map((q) => q.queue) : [];
    fill(queueNames, names.map((n) => h("option", { value: n })));
  }

  return {
    el,
    title: "Jobs",
    start(params) {
      epoch += 1;
      filters = {
        status: JOB_STATES.includes(params.get("status")) ? params.get("status") : "",
        queue: params.get("queue") || "",
        task: params.get("task") || "",
      };
      status.value = filters.status;
      queue.value = filters.queue;
      loadChoices();
      cursors = [null];
      page = 0;
      fill(body, emptyState("Loading jobs…"));
      rows.replaceChildren();
      // Only the newest page refreshes by itself: older pages hold still while read.
      timer = poller(load, () => (page === 0 ? LIST_EVERY_MS : 60000));
    },
    stop() {
      if (timer) timer.stop();
    },
  };
}

// -- one job ------------------------------------------------------------------------------

function detailList(job) {
  const item = (term, value, opts = {}) => [h("dt", {}, term), h("dd", { class: opts.mono ? "mono" : null, title: opts.title || null, dataset: opts.data || {} }, value)];
  const when = (iso) => (iso ? h("time", { datetime: iso, title: iso }, `${absolute(iso)} (${relative(iso)})`) : "–");
  return h("dl", { class: "details" },
    item("Job id", job.id, { mono: true }),
    item("Task", job.task),
    item("Queue", job.queue),
    item("Priority", String(job.priority)),
    item("Attempts", `${job.attempts} of ${job.max_retries + 1} allowed`, { data: { field: "attempts" } }),
    item("Worker", job.worker || "–", { mono: Boolean(job.worker) }),
    item("Timeout", job.timeout_s ? duration(job.timeout_s) : "none"),
    item("Back-off", `${job.backoff} ** attempt s`),
    item("Idempotency key", job.idempotency_key || "–", { mono: Boolean(job.idempotency_key) }),
    item("Created", when(job.created_at)),
    item(job.status === "pending" && job.attempts > 0 ? "Next attempt" : "Scheduled", when(job.scheduled_at)),
    item("Latest attempt started", when(job.started_at)),
    item("Latest attempt ended", when(job.finished_at)),
    item("Latest attempt took", duration(job.duration_s)));
}

function codeBlock(label, text, className = "") {
  return h("div", { class: "code-block" }, h("h3", {}, label), h("pre", { class: ["code", className], tabindex: "0" }, text));
}

export function jobView(ctx) {
  const title = h("h1", { class: "view-title", tabindex: "-1" }, "Job");
  const statusSlot = h("span", { class: "status-slot", "aria-live": "polite" });
  const cancel = h("button", { type: "button", class: "button danger", dataset: { action: "cancel" } }, "Cancel");
  const retry = h("button", { type: "button", class: "button primary", dataset: { action: "retry" } }, "Retry");
  const actionMsg = h("p", { class: "action-msg", role: "status" }, "");
  const progress = h("div", { class: "progress-slot" });
  const facts = h("div", {});
  const payload = h("div", { class: "payload" });
  const el = h("div", { class: "view view-job" },
    h("p", { class: "back" }, h("a", { href: "#/jobs" }, "‹ All jobs")),
    h("div", { class: "view-head job-head" }, title, statusSlot, h("div", { class: "actions" }, cancel, retry)),
    actionMsg, progress,
    panel({ title: "Details", id: "job-details" }, facts,
      h("p", { class: "muted note" }, "taskmill keeps each job's attempt count and the times of its latest attempt, not a record of every attempt.")),
    payload);

  let jobId = null;
  let job = null;
  let timer = null;
  let epoch = 0; // bumped by start(): answers about the previous job are dropped

  function render() {
    document.title = `${job.task} · taskmill`;
    setText(title, job.task);
    fillIfChanged(statusSlot, [job.status, job.cancel_requested], () => jobBadge(job));
    statusSlot.dataset.status = job.status;
    cancel.hidden = !(job.status === "pending" || (job.status === "running" && !job.cancel_requested));
    retry.hidden = !(job.status === "failed" || job.status === "cancelled");
    if (job.status === "running") fill(progress, progressBar(job.progress || 0, job.progress_message));
    else progress.replaceChildren();
    fillIfChanged(facts, job, () => detailList(job));
    fillIfChanged(payload, [job.args, job.kwargs, job.result, job.error, job.traceback], () => [
      panel({ title: "Arguments", id: "job-args" }, codeBlock("args", json(job.args)), codeBlock("kwargs", json(job.kwargs))),
      job.status === "completed" || job.result !== null ? panel({ title: "Result", id: "job-result" }, h("pre", { class: "code", tabindex: "0" }, json(job.result))) : null,
      job.error || job.traceback ? panel({ title: "Error", id: "job-error", className: "panel-error" },
        job.error ? h("pre", { class: "code error-text" }, job.error) : null,
        job.traceback ? h("details", { open: job.status === "failed" }, h("summary", {}, "Traceback"), h("pre", { class: "code", tabindex: "0" }, job.traceback)) : null) : null,
    ]);
  }

  async function load() {
    const asked = epoch;
    let found;
    try {
      found = await ctx.api.get(`/api/tasks/${encodeURIComponent(jobId)}`);
    } catch (error) {
      if (asked === epoch && (!job || error.status === 404)) fill(facts, errorState("this job", error));
      throw error;
    }
    if (asked !== epoch) return;
    job = found;
    render();
  }

  async function act(action) {
    const button = action === "cancel" ? cancel : retry;
    button.disabled = true;
    setText(actionMsg, action === "cancel" ? "Cancelling…" : "Retrying…");
    actionMsg.className = "action-msg";
    const asked = epoch;
    try {
      const changed = await ctx.api.post(`/api/tasks/${encodeURIComponent(jobId)}/${action}`);
      if (asked !== epoch) return;
      job = changed;
      setText(actionMsg, action === "cancel"
        ? (job.status === "cancelled" ? "Cancelled." : "Cancel requested: the worker stops it within a second.")
        : "Queued again with a fresh attempt budget.");
      actionMsg.classList.add("ok");
      render();
    } catch (error) {
      setText(actionMsg, `${action === "cancel" ? "Cancel" : "Retry"} refused: ${error.message}`);
      actionMsg.classList.add("bad");
      timer.now(); // a success answered with the job as it is now; a refusal may be stale
    } finally {
      button.disabled = false;
    }
  }

  cancel.addEventListener("click", () => act("cancel"));
  retry.addEventListener("click", () => act("retry"));

  return {
    el,
    title: "Job",
    start(params, id) {
      epoch += 1;
      jobId = id;
      job = null;
      setText(title, "Job");
      statusSlot.replaceChildren();
      cancel.hidden = true;
      retry.hidden = true;
      setText(actionMsg, "");
      progress.replaceChildren();
      payload.replaceChildren();
      fill(facts, emptyState("Loading the job…"));
      timer = poller(load, () => (job && ["completed", "failed", "cancelled"].includes(job.status) ? 5000 : DETAIL_EVERY_MS));
    },
    stop() {
      if (timer) timer.stop();
    },
  };
}
