// Submit: enqueue any registered task with its arguments, queue and priority. The form is
// built from GET /api/task-types: one field per parameter of the task's function.

import { h, fill, setText } from "./dom.js";
import { jobHref } from "./jobs.js";
import { emptyState, errorState, field, panel, select, viewHead } from "./ui.js";

const NUMBER_TYPES = new Set(["int", "float", "int | float", "float | int"]);

/** The value of a parameter's field, as JSON for the API; undefined when left empty. */
function readValue(param, control) {
  if (param.annotation === "bool") return control.checked;
  const text = control.value;
  if (text === "") return undefined;
  if (param.annotation === "str") return text;
  if (NUMBER_TYPES.has(param.annotation)) {
    const n = Number(text);
    if (!Number.isFinite(n)) throw new Error(`${param.name}: ${JSON.stringify(text)} is not a number`);
    return n;
  }
  try {
    return JSON.parse(text); // lists, objects, numbers, true/false/null
  } catch {
    return text; // anything else is taken as text
  }
}

function parameterControl(param) {
  const name = `param-${param.name}`;
  if (param.kind === "var_positional" || param.kind === "var_keyword") {
    return h("textarea", { name, rows: 2, class: "mono", spellcheck: "false",
      placeholder: param.kind === "var_positional" ? "[ ] — a JSON array" : "{ } — a JSON object" });
  }
  if (param.annotation === "bool") {
    return h("input", { type: "checkbox", name, checked: param.default === true });
  }
  const number = NUMBER_TYPES.has(param.annotation);
  const hasDefault = !param.required && param.default !== null;
  return h("input", {
    type: number ? "number" : "text", step: number ? "any" : null, name,
    required: param.required, autocomplete: "off", spellcheck: "false",
    placeholder: hasDefault ? `default: ${typeof param.default === "string" ? param.default : JSON.stringify(param.default)}` : (param.required ? "" : "optional"),
  });
}

function parameterHint(param) {
  const bits = [];
  if (param.annotation) bits.push(param.annotation);
  if (param.kind === "var_positional") bits.push("extra positional arguments");
  else if (param.kind === "var_keyword") bits.push("extra keyword arguments");
  else bits.push(param.required ? "required" : "optional");
  if (!["str", "bool"].includes(param.annotation) && !NUMBER_TYPES.has(param.annotation) && param.kind !== "var_positional" && param.kind !== "var_keyword") {
    bits.push("JSON, or plain text");
  }
  return bits.join(" · ");
}

/** args and kwargs for POST /api/tasks from the parameter fields. */
function collectArguments(params, controls) {
  const args = [];
  const kwargs = {};
  let extraArgs = [];
  for (const param of params) {
    const control = controls.get(param.name);
    if (param.kind === "var_positional" || param.kind === "var_keyword") {
      if (!control.value.trim()) continue;
      let parsed;
      try {
        parsed = JSON.parse(control.value);
      } catch {
        throw new Error(`${param.name}: not valid JSON`);
      }
      if (param.kind === "var_positional") {
        if (!Array.isArray(parsed)) throw new Error(`${param.name}: give a JSON array`);
        extraArgs = parsed;
      } else {
        if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) throw new Error(`${param.name}: give a JSON object`);
        Object.assign(kwargs, parsed);
      }
      continue;
    }
    const value = readValue(param, control);
    if (value === undefined) continue;
    if (param.kind === "positional_only") args.push(value);
    else kwargs[param.name] = value;
  }
  if (extraArgs.length) {
    // Extra positional arguments come after every named positional one: pass those by
    // position too, in order.
    for (const param of params) {
      if (param.kind === "positional_or_keyword" && param.name in kwargs) {
        args.push(kwargs[param.name]);
        delete kwargs[param.name];
      }
    }
    args.push(...extraArgs);
  }
  return { args, kwargs };
}

export function submitView(ctx) {
  const taskSelect = select({ name: "task", required: true }, []);
  const description = h("p", { class: "muted task-description" }, "");
  const paramsBox = h("fieldset", { class: "params" });
  const queue = h("input", { name: "queue", type: "text", autocomplete: "off", spellcheck: "false", pattern: "[A-Za-z0-9_.:\\-]{1,64}" });
  const priority = h("input", { name: "priority", type: "number", step: "1", min: "-1000", max: "1000" });
  const delay = h("input", { name: "delay", type: "number", step: "any", min: "0", placeholder: "0" });
  const submit = h("button", { type: "submit", class: "button primary" }, "Enqueue job");
  const outcome = h("div", { class: "outcome", role: "status", "aria-live": "polite" });
  const form = h("form", { class: "submit-form" },
    field("Task", taskSelect), description, paramsBox,
    h("fieldset", { class: "options" }, h("legend", {}, "Options"),
      h("div", { class: "row" },
        field("Queue", queue, "Empty: the task's queue"),
        field("Priority", priority, "Higher runs first"),
        field("Delay (s)", delay, "Seconds before it may start"))),
    h("div", { class: "form-actions" }, submit));
  const body = h("div", {}, emptyState("Loading tasks…"));
  const el = h("div", { class: "view view-submit" },
    viewHead("Submit a job"),
    panel({ title: "New job", id: "submit" }, body, outcome));

  let types = [];
  let current = null;
  const controls = new Map();

  function showTask(name) {
    current = types.find((t) => t.name === name) || null;
    controls.clear();
    if (!current) {
      paramsBox.replaceChildren();
      return;
    }
    setText(description, current.description || "");
    queue.placeholder = current.queue;
    priority.placeholder = String(current.priority);
    const fields = current.parameters.map((param) => {
      const control = parameterControl(param);
      controls.set(param.name, control);
      return field(param.name, control, parameterHint(param));
    });
    fill(paramsBox, h("legend", {}, "Arguments"), fields.length ? fields : h("p", { class: "muted" }, "This task takes no arguments."));
  }

  taskSelect.addEventListener("change", () => showTask(taskSelect.value));

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!current) return;
    let request;
    try {
      request = { task: current.name, ...collectArguments(current.parameters, controls) };
    } catch (error) {
      fill(outcome, h("p", { class: "bad" }, error.message));
      return;
    }
    if (queue.value.trim()) request.queue = queue.value.trim();
    if (priority.value !== "") request.priority = Number(priority.value);
    if (delay.value !== "") request.delay = Number(delay.value);
    submit.disabled = true;
    try {
      const job = await ctx.api.post("/api/tasks", request);
      fill(outcome, h("p", { class: "ok" }, `Enqueued ${job.task} on queue ${job.queue} (${job.status}). `,
        h("a", { href: jobHref(job.id), class: "job-link" }, `Open job ${job.id}`)));
    } catch (error) {
      const details = error.details ? error.details.map((d) => h("li", {}, `${d.loc.join(".")}: ${d.message}`)) : [];
      fill(outcome, h("div", { class: "bad" }, h("p", {}, `Not enqueued: ${error.message}`), details.length ? h("ul", {}, details) : null));
    } finally {
      submit.disabled = false;
    }
  });

  return {
    el,
    title: "Submit",
    async start(params) {
      outcome.replaceChildren();
      try {
        types = await ctx.taskTypes();
      } catch (error) {
        fill(body, errorState("the registered tasks", error));
        return;
      }
      if (types.length === 0) {
        fill(body, emptyState("No tasks registered", "This server's app has no tasks to enqueue."));
        return;
      }
      const wanted = params.get("task");
      const keep = current && types.some((t) => t.name === current.name) ? current.name : null;
      const choice = types.some((t) => t.name === wanted) ? wanted : (keep || types[0].name);
      taskSelect.replaceChildren(...types.map((t) => h("option", { value: t.name }, `${t.name}  (${t.queue})`)));
      taskSelect.value = choice;
      if (!current || current.name !== choice) showTask(choice);
      if (!form.isConnected) fill(body, form);
    },
    stop() {},
  };
}
