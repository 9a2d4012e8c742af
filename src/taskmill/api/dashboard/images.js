// Images: recent uploads as a gallery of thumbnails with status, size and a link to each
// rendition; failed ones show their error. Shown only when the server has the images API.

import { h, fill, fillIfChanged, safeUrl, syncRows } from "./dom.js";
import { absolute, bytes, shortId } from "./format.js";
import { badge, emptyState, errorState, panel, poller, viewHead } from "./ui.js";

const PAGE_SIZE = 24;
const MAX_PAGE = 200; // the API's largest page
const BUSY_EVERY_MS = 3000; // while an image is still being processed
const IDLE_EVERY_MS = 15000;
const RENDITIONS = ["thumbnail", "resized", "compressed"];

function dims(file) {
  return file && file.width && file.height ? `${file.width} × ${file.height}` : "";
}

function fileLink(label, file) {
  const href = file && safeUrl(file.url);
  if (!href) return null;
  return h("li", {}, h("a", { href, target: "_blank", rel: "noopener noreferrer" }, label),
    h("span", { class: "muted" }, ` ${dims(file)} · ${bytes(file.bytes)}${file.format ? ` · ${file.format}` : ""}`));
}

function cardContent(image) {
  const renditions = image.renditions || {};
  const preview = renditions.thumbnail || renditions.resized || (image.status === "completed" ? image.original : null);
  const src = preview && safeUrl(preview.url);
  const picture = src
    ? h("img", { src, alt: `Image ${shortId(image.id)}`, loading: "lazy", decoding: "async", width: 300, height: 300 })
    : h("div", { class: ["placeholder", `state-${image.status}`], "aria-hidden": "true" }, image.status === "failed" ? "!" : "…");
  const links = [fileLink("original", image.original), ...RENDITIONS.map((name) => fileLink(name, renditions[name]))].filter(Boolean);
  return [
    h("div", { class: "image-frame" }, picture),
    h("div", { class: "image-meta" },
      h("div", { class: "image-line" }, badge(image.status), h("span", { class: "muted mono", title: image.id }, shortId(image.id))),
      image.original ? h("p", { class: "image-size" }, `${dims(image.original)} · ${bytes(image.original.bytes)}`) : null,
      h("p", { class: "muted" }, `uploaded ${absolute(image.created_at)}`),
      image.error ? h("p", { class: "error-text" }, image.error) : null,
      links.length ? h("ul", { class: "file-links", "aria-label": "Files" }, links) : null),
  ];
}

// Signed URLs differ on every answer: a card is rebuilt when the image changed (or every
// ten minutes, before its links expire), not on each refresh, so thumbnails load once.
const LINKS_RENEWED_MS = 600000;

function updateCard(card, image) {
  card.className = `image-card image-${image.status}`;
  card.dataset.status = image.status;
  const files = Object.keys(image.renditions || {}).sort();
  fillIfChanged(card, [image.status, image.error, files, Boolean(image.original), Math.floor(Date.now() / LINKS_RENEWED_MS)],
    () => cardContent(image));
}

export function imagesView(ctx) {
  const gallery = h("ul", { class: "gallery" });
  const body = h("div", {}, emptyState("Loading images…"));
  const more = h("button", { type: "button", class: "button", hidden: true }, "Load older images");
  const el = h("div", { class: "view view-images" },
    viewHead("Images"),
    panel({ title: "Recent uploads", id: "images" }, body, h("div", { class: "pager" }, more)));

  let images = [];
  let nextCursor = null;
  let timer = null;

  function render() {
    if (images.length === 0) {
      fill(body, emptyState("No images yet", ["Upload one with ", h("code", {}, "POST /api/images"), " or ", h("code", {}, "taskmill image FILE"), "."]));
      return;
    }
    if (!gallery.isConnected) fill(body, gallery);
    syncRows(gallery, images, (i) => i.id, (i) => h("li", { dataset: { image: i.id } }), updateCard);
    more.hidden = !nextCursor;
  }

  async function loadFirst() {
    try {
      // Everything shown is fetched again, not only the first page: the answer carries
      // freshly signed media URLs, and the ones fetched earlier expire.
      const found = await ctx.api.get("/api/images", { limit: Math.min(MAX_PAGE, Math.max(PAGE_SIZE, images.length)) });
      images = found.images;
      nextCursor = found.next_cursor;
    } catch (error) {
      if (error.status === 404) {
        showUnavailable();
        timer.stop();
        return;
      }
      fill(body, errorState("images", error));
      return;
    }
    render();
  }

  more.addEventListener("click", async () => {
    more.disabled = true;
    try {
      const found = await ctx.api.get("/api/images", { limit: PAGE_SIZE, cursor: nextCursor });
      images = [...images, ...found.images];
      nextCursor = found.next_cursor;
      render();
    } catch (error) {
      fill(body, errorState("images", error));
    } finally {
      more.disabled = false;
    }
  });

  function showUnavailable() {
    more.hidden = true;
    fill(body, emptyState("The image service is not available on this server",
      ["Its API (", h("code", {}, "/api/images"), ") is not enabled here; uploads will show up in this gallery once it is."]));
  }

  return {
    el,
    title: "Images",
    start() {
      if (!ctx.imagesAvailable) {
        showUnavailable();
        return;
      }
      const busy = () => images.some((i) => i.status === "pending" || i.status === "running");
      timer = poller(loadFirst, () => (busy() ? BUSY_EVERY_MS : IDLE_EVERY_MS));
    },
    stop() {
      if (timer) timer.stop();
    },
  };
}
