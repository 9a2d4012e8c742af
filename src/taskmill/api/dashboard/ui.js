// Pieces every view uses: state badges, panels, empty and error states, polling.

import { h } from "./dom.js";

export const JOB_STATES = ["pending", "running", "completed", "failed", "cancelled"];

export function badge(state, text = state) {
  return h("span", { class: ["badge", `state-${state}`] }, text);
}

// A job's status, "cancelling" once a cancel of a running job is requested.
export function jobBadge(job) {
  return badge(job.status, job.cancel_requested && job.status === "running" ? "cancelling" : job.status);
}

export function panel({ title, id, actions = null, className = "" }, ...body) {
  const headingId = id ? `${id}-title` : null;
  return h("section", { class: ["panel", className], id, "aria-labelledby": headingId },
    h("div", { class: "panel-head" }, h("h2", { id: headingId }, title), actions),
    ...body);
}

export function viewHead(title, ...extra) {
  return h("div", { class: "view-head" },
    h("h1", { class: "view-title", tabindex: "-1" }, title), ...extra);
}

/** A message in place of content: nothing to show yet, or nothing at all. */
export function emptyState(title, text = null) {
  return h("div", { class: "empty-state" }, h("p", { class: "empty-title" }, title), text && h("p", {}, text));
}

export function errorState(what, error) {
  return h("div", { class: "error-state", role: "alert" },
    h("p", { class: "empty-title" }, `Could not load ${what}`),
    h("p", {}, error && error.message ? error.message : String(error)));
}

/**
 * Run `task` now and then every `intervalMs` (a number, or a function giving one) after it
 * settles, while the page is visible (a hidden tab costs the server nothing). `now()` runs
 * it at once, or right after the run in progress, so a click never gets a stale answer;
 * `stop()` ends it.
 */
export function poller(task, intervalMs) {
  let timer = null;
  let running = false;
  let again = false;
  let stopped = false;
  const schedule = () => {
    clearTimeout(timer);
    if (!stopped) timer = setTimeout(run, typeof intervalMs === "function" ? intervalMs() : intervalMs);
  };
  async function run() {
    if (stopped) return;
    if (running) {
      again = true;
      return;
    }
    if (document.hidden) return; // resumed by the visibilitychange listener
    running = true;
    again = false;
    try {
      await task();
    } catch {
      // the task shows its own errors; keep polling so it recovers by itself
    } finally {
      running = false;
      if (again) run();
      else schedule();
    }
  }
  const onVisible = () => {
    if (!document.hidden) run();
  };
  document.addEventListener("visibilitychange", onVisible);
  run();
  return {
    now: () => {
      clearTimeout(timer);
      run();
    },
    stop: () => {
      stopped = true;
      clearTimeout(timer);
      document.removeEventListener("visibilitychange", onVisible);
    },
  };
}

/** A <select> with `options` ([value, label] pairs or plain values). */
export function select(attrs, options, selected = "") {
  const el = h("select", attrs);
  setOptions(el, options, selected);
  return el;
}

export function setOptions(el, options, selected = el.value) {
  el.replaceChildren(...options.map((o) => {
    const [value, label] = Array.isArray(o) ? o : [o, o];
    return h("option", { value }, label);
  }));
  el.value = options.some((o) => (Array.isArray(o) ? o[0] : o) === selected) ? selected : (el.options[0] ? el.options[0].value : "");
}

export function field(label, control, hint = null) {
  const id = control.id || `f-${Math.random().toString(36).slice(2, 9)}`;
  control.id = id;
  const hintId = hint ? `${id}-hint` : null;
  if (hintId) control.setAttribute("aria-describedby", hintId);
  return h("div", { class: "field" },
    h("label", { for: id }, label), control, hint && h("p", { class: "hint", id: hintId }, hint));
}

/** Progress bar (0..1) with its message. */
export function progressBar(fraction, message = null) {
  const pct = Math.round(Math.min(1, Math.max(0, fraction || 0)) * 100);
  const bar = h("div", { class: "progress-fill" });
  bar.style.width = `${pct}%`; // through CSSOM: the CSP forbids style attributes
  return h("div", { class: "progress" },
    h("div", { class: "progress-track", role: "progressbar", "aria-valuemin": "0", "aria-valuemax": "100", "aria-valuenow": String(pct), "aria-label": "Progress" }, bar),
    h("span", { class: "progress-text" }, `${pct} %${message ? ` · ${message}` : ""}`));
}
