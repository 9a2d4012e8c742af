// Formatting for people: counts, rates, durations, times and sizes.

const integer = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });

export function count(n) {
  return typeof n === "number" ? integer.format(n) : "–";
}

export function rate(perSecond) {
  if (typeof perSecond !== "number") return "–";
  if (perSecond === 0) return "0";
  if (perSecond < 0.1) return perSecond.toFixed(3);
  if (perSecond < 10) return perSecond.toFixed(2);
  return integer.format(perSecond);
}

/** 0.4 -> "400 ms", 75 -> "1 m 15 s". */
export function duration(seconds) {
  if (typeof seconds !== "number" || !Number.isFinite(seconds)) return "–";
  if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
  if (seconds < 60) return `${seconds < 10 ? seconds.toFixed(1) : Math.round(seconds)} s`;
  const m = Math.floor(seconds / 60);
  if (m < 60) return `${m} m ${Math.round(seconds % 60)} s`;
  const hours = Math.floor(m / 60);
  if (hours < 48) return `${hours} h ${m % 60} m`;
  return `${Math.floor(hours / 24)} d ${hours % 24} h`;
}

/** Age in seconds, short: "4 s", "3 m", "2 h", "5 d". */
export function age(seconds) {
  if (typeof seconds !== "number" || !Number.isFinite(seconds)) return "–";
  const v = Math.max(0, seconds);
  if (v < 60) return `${Math.floor(v)} s`;
  if (v < 3600) return `${Math.floor(v / 60)} m`;
  if (v < 172800) return `${Math.floor(v / 3600)} h`;
  return `${Math.floor(v / 86400)} d`;
}

export function parseTime(iso) {
  if (!iso) return null;
  const t = new Date(iso);
  return Number.isNaN(t.getTime()) ? null : t;
}

/** "12 s ago" or "in 3 m", from an ISO time. */
export function relative(iso, now = Date.now()) {
  const t = parseTime(iso);
  if (!t) return "–";
  const diff = (now - t.getTime()) / 1000;
  if (Math.abs(diff) < 1) return "just now";
  return diff >= 0 ? `${age(diff)} ago` : `in ${age(-diff)}`;
}

const timeFormat = new Intl.DateTimeFormat(undefined, {
  hour: "2-digit", minute: "2-digit", second: "2-digit",
});
const dateTimeFormat = new Intl.DateTimeFormat(undefined, {
  year: "numeric", month: "short", day: "numeric",
  hour: "2-digit", minute: "2-digit", second: "2-digit",
});
const clockFormat = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });

export function clock(date) {
  return clockFormat.format(date);
}

export function time(date) {
  return timeFormat.format(date);
}

/** A full local date and time, for titles and detail pages. */
export function absolute(iso) {
  const t = parseTime(iso);
  return t ? dateTimeFormat.format(t) : "–";
}

export function bytes(n) {
  if (typeof n !== "number") return "–";
  if (n < 1024) return `${n} B`;
  const units = ["KiB", "MiB", "GiB"];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i += 1;
  }
  return `${v < 10 ? v.toFixed(1) : Math.round(v)} ${units[i]}`;
}

export function shortId(id) {
  return typeof id === "string" ? id.slice(-12) : "";
}

/** JSON for reading: indented, or "null". */
export function json(value) {
  return JSON.stringify(value === undefined ? null : value, null, 2);
}
