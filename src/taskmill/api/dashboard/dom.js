// DOM helpers. Text from the API only ever reaches the page as text nodes or attribute
// values set through the DOM: nothing here parses HTML, so job data cannot inject markup.

const SVG_NS = "http://www.w3.org/2000/svg";

function apply(el, attrs) {
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") el.setAttribute("class", Array.isArray(value) ? value.filter(Boolean).join(" ") : value);
    else if (name === "text") el.textContent = String(value);
    else if (name === "dataset") Object.assign(el.dataset, value);
    else if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else el.setAttribute(name, value === true ? "" : String(value));
  }
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** h("a", {href: "#/jobs", class: "x"}, "text", otherNode): an element. */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  apply(el, attrs);
  append(el, children);
  return el;
}

/** The same for SVG elements. */
export function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  apply(el, attrs);
  append(el, children);
  return el;
}

/** Replace every child of `el`. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** Set the text of `el` only when it changed (no needless layout, no lost selection). */
export function setText(el, text) {
  const value = String(text);
  if (el.textContent !== value) el.textContent = value;
}

/**
 * Keep `tbody`'s rows in step with `items`, reusing the row of each key: rows are updated
 * in place and moved only when their position changed, so a focused link inside a row
 * keeps its focus while the table refreshes.
 */
export function syncRows(tbody, items, key, create, update) {
  const existing = new Map();
  for (const row of tbody.children) existing.set(row.dataset.key, row);
  const wanted = new Set();
  items.forEach((item, index) => {
    const k = String(key(item));
    wanted.add(k);
    let row = existing.get(k);
    if (!row) {
      row = create(item);
      row.dataset.key = k;
    }
    update(row, item);
    if (tbody.children[index] !== row) tbody.insertBefore(row, tbody.children[index] || null);
  });
  for (const [k, row] of existing) if (!wanted.has(k)) row.remove();
}

/** A URL safe to put in href or src: http(s) or same-origin, never javascript: or data:. */
export function safeUrl(url) {
  if (typeof url !== "string" || !url) return null;
  try {
    const parsed = new URL(url, window.location.href);
    return parsed.protocol === "http:" || parsed.protocol === "https:" ? parsed.href : null;
  } catch {
    return null;
  }
}

/** Rebuild `el`'s content only when `signature` changed since the last call. */
export function fillIfChanged(el, signature, build) {
  const sig = typeof signature === "string" ? signature : JSON.stringify(signature);
  if (el.dataset.sig === sig) return;
  el.dataset.sig = sig;
  fill(el, build());
}
