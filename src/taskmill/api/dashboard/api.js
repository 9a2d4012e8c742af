// Talking to the taskmill API: fetch with the API key, errors as ApiError, and the stats
// WebSocket that reconnects by itself.

export class ApiError extends Error {
  /** status 0 means the server did not answer at all. */
  constructor(status, code, message, details = null) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details;
  }

  get unauthorized() {
    return this.status === 401;
  }

  get unreachable() {
    return this.status === 0 || this.status >= 502;
  }
}

async function errorFrom(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    // not JSON: a proxy's error page, say
  }
  const info = body && body.error;
  if (info && typeof info.message === "string") {
    return new ApiError(response.status, info.code || "error", info.message, info.details || null);
  }
  return new ApiError(response.status, "http_error", `HTTP ${response.status} ${response.statusText}`.trim());
}

export class Api {
  /**
   * `onHealth(ok, error)` hears about every answer: whether the server answered, and the
   * error when it did not (or refused the key), so one banner can speak for every view.
   */
  constructor({ key = null, onHealth = () => {}, timeoutMs = 15000 } = {}) {
    this.key = key;
    this.onHealth = onHealth;
    this.timeoutMs = timeoutMs;
  }

  headers(extra = {}) {
    const headers = { accept: "application/json", ...extra };
    if (this.key) headers.authorization = `Bearer ${this.key}`;
    return headers;
  }

  async request(method, path, body = undefined) {
    const init = { method, headers: this.headers(), signal: AbortSignal.timeout(this.timeoutMs) };
    if (body !== undefined) {
      init.headers["content-type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch (cause) {
      const timedOut = cause && cause.name === "TimeoutError";
      const error = new ApiError(0, "unreachable", timedOut
        ? "The server did not answer in time."
        : "The server is not answering (network error).");
      this.onHealth(false, error);
      throw error;
    }
    if (!response.ok) {
      const error = await errorFrom(response);
      this.onHealth(!error.unreachable && !error.unauthorized, error);
      throw error;
    }
    this.onHealth(true, null);
    return response.status === 204 ? null : response.json();
  }

  get(path, params = {}) {
    const query = new URLSearchParams();
    for (const [name, value] of Object.entries(params)) {
      if (value !== null && value !== undefined && value !== "") query.set(name, String(value));
    }
    const qs = query.toString();
    return this.request("GET", qs ? `${path}?${qs}` : path);
  }

  post(path, body) {
    return this.request("POST", path, body);
  }
}

const POLICY_VIOLATION = 1008; // the server's close code for a missing or wrong key
const RECONNECT_MIN_MS = 1000;
const RECONNECT_MAX_MS = 15000;
const SILENCE_MS = 10000; // the server pushes every 2 s: this long without one is a dead link

/**
 * The /api/stats/ws snapshot stream. Reconnects with growing pauses (1 s up to 15 s, with
 * jitter so that many open dashboards do not all come back at once) until `close()`.
 * Callbacks: onSnapshot(stats), onState({state: "connecting"|"live"|"waiting", retryInMs,
 * reason}), onUnauthorized().
 */
export class StatsSocket {
  constructor({ key, onSnapshot, onState, onUnauthorized }) {
    this.key = key;
    this.onSnapshot = onSnapshot;
    this.onState = onState;
    this.onUnauthorized = onUnauthorized;
    this.failures = 0;
    this.ws = null;
    this.retryTimer = null;
    this.silenceTimer = null;
    this.closed = false;
  }

  url() {
    const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
    // Browsers cannot set headers on a WebSocket: the key travels as ?token= (see auth.py).
    const token = this.key ? `?token=${encodeURIComponent(this.key)}` : "";
    return `${scheme}//${window.location.host}/api/stats/ws${token}`;
  }

  connect() {
    if (this.closed) return;
    clearTimeout(this.retryTimer);
    this.onState({ state: "connecting" });
    const ws = new WebSocket(this.url());
    this.ws = ws;
    ws.addEventListener("message", (event) => {
      if (ws !== this.ws) return;
      this.failures = 0;
      this.watchSilence();
      let snapshot;
      try {
        snapshot = JSON.parse(event.data);
      } catch {
        return;
      }
      this.onState({ state: "live" });
      this.onSnapshot(snapshot);
    });
    ws.addEventListener("close", (event) => {
      if (ws !== this.ws || this.closed) return;
      clearTimeout(this.silenceTimer);
      if (event.code === POLICY_VIOLATION) {
        this.closed = true;
        this.onUnauthorized();
        return;
      }
      this.scheduleReconnect(event.reason || (event.code === 1006 ? "connection lost" : `closed (${event.code})`));
    });
  }

  watchSilence() {
    clearTimeout(this.silenceTimer);
    this.silenceTimer = setTimeout(() => {
      const ws = this.ws;
      this.ws = null;
      if (ws) ws.close();
      this.scheduleReconnect("no update for 10 s");
    }, SILENCE_MS);
  }

  scheduleReconnect(reason) {
    if (this.closed) return;
    this.failures += 1;
    const base = Math.min(RECONNECT_MAX_MS, RECONNECT_MIN_MS * 2 ** (this.failures - 1));
    const retryInMs = Math.round(base * (0.75 + Math.random() * 0.5));
    this.onState({ state: "waiting", retryInMs, reason, retryAt: Date.now() + retryInMs });
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => this.connect(), retryInMs);
  }

  /** Try again at once (the banner's button). */
  reconnectNow() {
    if (this.closed) return;
    const ws = this.ws;
    this.ws = null;
    if (ws) ws.close();
    this.connect();
  }

  close() {
    this.closed = true;
    clearTimeout(this.retryTimer);
    clearTimeout(this.silenceTimer);
    if (this.ws) this.ws.close();
    this.ws = null;
  }
}
