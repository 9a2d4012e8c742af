// The dashboard: asks for an API key when the server needs one, then shows the views
// (hash routes: #/overview, #/workers, #/jobs?..., #/jobs/<id>, #/submit, #/images) fed
// by the API and the live stats WebSocket.

import { Api, StatsSocket } from "./api.js";
import { fill, setText } from "./dom.js";
import { age } from "./format.js";
import { imagesView } from "./images.js";
import { jobView, jobsView } from "./jobs.js";
import { overviewView } from "./overview.js";
import { submitView } from "./submit.js";
import { workersView } from "./workers.js";

// The key lives in sessionStorage: it survives reloads in this tab but not the tab
// itself, so a key that can submit and cancel jobs is not left on a shared machine's
// disk for the next person (localStorage would keep it until someone signs out).
const KEY_STORAGE = "taskmill.apiKey";
const root = document.documentElement;
const needsKey = root.dataset.auth === "required";

const $ = (id) => document.getElementById(id);
const login = $("login");
const loginForm = $("login-form");
const loginInput = $("login-key");
const loginError = $("login-error");
const shell = $("shell");
const views = $("views");
const nav = $("nav");
const conn = $("conn");
const banner = $("banner");
const bannerText = $("banner-text");
const bannerRetry = $("banner-retry");
const signOut = $("sign-out");

let api = null;
let socket = null;
let current = null;
let countdown = null;
let ctx = null;
const problems = { api: null, socket: null };

function storedKey() {
  try {
    return window.sessionStorage.getItem(KEY_STORAGE);
  } catch {
    return null; // storage disabled: ask every time
  }
}

function storeKey(key) {
  try {
    if (key) window.sessionStorage.setItem(KEY_STORAGE, key);
    else window.sessionStorage.removeItem(KEY_STORAGE);
  } catch {
    // storage disabled: the key lasts as long as the page
  }
}

// -- the banner: one place for "the server is not answering" ------------------------------

function showBanner() {
  clearInterval(countdown);
  const problem = problems.socket || problems.api;
  banner.hidden = !problem;
  if (!problem) return;
  const paint = () => {
    const wait = problems.socket && problems.socket.retryAt ? Math.max(0, (problems.socket.retryAt - Date.now()) / 1000) : null;
    const retrying = wait === null ? "" : wait >= 1 ? ` Reconnecting in ${age(wait)}…` : " Reconnecting…";
    setText(bannerText, `${problem.message}${retrying}`);
  };
  paint();
  if (problems.socket && problems.socket.retryAt) countdown = setInterval(paint, 500);
}

function onApiHealth(ok, error) {
  problems.api = ok ? null : { message: error.unauthorized ? "The API key was refused." : `${error.message} Data on this page may be out of date.` };
  if (error && error.unauthorized) {
    requireKey("The server refused the key (it may have been revoked). Enter a valid one.");
    return;
  }
  showBanner();
}

function onSocketState(state) {
  const labels = { connecting: "Connecting…", live: "Live", waiting: "Offline" };
  conn.dataset.state = state.state;
  setText(conn, labels[state.state]);
  if (state.state === "live") problems.socket = null;
  else if (state.state === "waiting") {
    problems.socket = { message: `Live updates stopped: ${state.reason}.`, retryAt: state.retryAt };
  }
  showBanner();
}

// -- views and routes ---------------------------------------------------------------------

function createViews(context) {
  const job = jobView(context);
  return {
    overview: overviewView(context),
    workers: workersView(context),
    jobs: jobsView(context),
    job,
    submit: submitView(context),
    images: imagesView(context),
  };
}

function parseRoute() {
  const raw = window.location.hash.replace(/^#\/?/, "");
  const [path, query = ""] = raw.split("?");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  const params = new URLSearchParams(query);
  if (parts[0] === "jobs" && parts[1]) return { name: "job", section: "jobs", params, id: parts[1] };
  const known = ["overview", "workers", "jobs", "submit", "images"];
  const name = known.includes(parts[0]) ? parts[0] : "overview";
  return { name, section: name, params, id: null };
}

function route({ focus }) {
  const r = parseRoute();
  const view = ctx.views[r.name];
  if (current) current.stop();
  current = view;
  fill(views, view.el);
  for (const link of nav.querySelectorAll("a")) {
    if (link.dataset.section === r.section) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  document.title = `${view.title} · taskmill`;
  view.start(r.params, r.id);
  if (focus) {
    // Keyboard and screen-reader users land on the new view's heading, as after a page load.
    const heading = view.el.querySelector(".view-title");
    if (heading) heading.focus({ preventScroll: false });
  }
}

// -- start, and the key prompt ------------------------------------------------------------

function requireKey(message) {
  if (socket) socket.close();
  socket = null;
  if (current) current.stop();
  current = null;
  storeKey(null);
  api = null;
  shell.hidden = true;
  nav.hidden = true;
  conn.hidden = true;
  signOut.hidden = true;
  banner.hidden = true;
  views.replaceChildren();
  login.hidden = false;
  setText(loginError, message || "");
  loginError.hidden = !message;
  loginInput.value = "";
  loginInput.setAttribute("aria-invalid", message ? "true" : "false");
  loginInput.focus();
}

function startDashboard(key) {
  login.hidden = true;
  shell.hidden = false;
  nav.hidden = false;
  conn.hidden = false;
  signOut.hidden = !key;
  api = new Api({ key, onHealth: onApiHealth });
  let taskTypes = null;
  ctx = {
    api,
    stats: null,
    imagesAvailable: root.dataset.images === "available",
    taskTypes() {
      // The registry only changes with a restart of the server: ask once per page.
      if (!taskTypes) {
        taskTypes = api.get("/api/task-types").then((r) => r.task_types);
        taskTypes.catch(() => {
          taskTypes = null;
        });
      }
      return taskTypes;
    },
  };
  ctx.views = createViews(ctx);
  socket = new StatsSocket({
    key,
    onSnapshot(stats) {
      ctx.stats = stats;
      if (current && current.onStats) current.onStats(stats);
    },
    onState: onSocketState,
    onUnauthorized: () => requireKey("The server refused the key. Enter a valid one."),
  });
  socket.connect();
  route({ focus: false });
}

// The ApiError the server answered a request with this key, or null when it took it.
async function tryKey(key) {
  try {
    await new Api({ key }).get("/api/stats");
    return null;
  } catch (error) {
    return error;
  }
}

function keyProblem(error) {
  return error.unauthorized
    ? "That key was refused: it is not one of the server's TASKMILL_API_KEYS."
    : `Could not check the key: ${error.message}`;
}

loginForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  const key = loginInput.value.trim();
  if (!key) return;
  const button = loginForm.querySelector("button");
  button.disabled = true;
  const problem = await tryKey(key);
  button.disabled = false;
  if (problem) {
    setText(loginError, keyProblem(problem));
    loginError.hidden = false;
    loginInput.setAttribute("aria-invalid", "true");
    loginInput.select();
    return;
  }
  storeKey(key);
  startDashboard(key);
});

signOut.addEventListener("click", () => requireKey(""));
bannerRetry.addEventListener("click", () => {
  if (socket) socket.reconnectNow();
  if (current) {
    current.stop();
    route({ focus: false });
  }
});
window.addEventListener("hashchange", () => {
  if (api) route({ focus: true });
});

async function main() {
  if (!needsKey) {
    startDashboard(null);
    return;
  }
  const key = storedKey();
  if (!key) {
    requireKey("");
    return;
  }
  const problem = await tryKey(key);
  if (problem && problem.unauthorized) requireKey("The saved key was refused. Enter a valid one.");
  else startDashboard(key); // unreachable now: the banner says so, and it retries
}

main();
