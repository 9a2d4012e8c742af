"""`/`: the dashboard. A static page, its scripts and styles, served from the package
itself: no CDN and no build step, so it works on machines without internet access.

The files are read once; each answer carries an ETag and `Cache-Control: no-cache`, so a
browser revalidates on every load (a cheap 304) and never runs a stale script after an
upgrade. The page learns two facts from attributes on <html>, filled in here, so that it
never has to probe for them with requests that fail: whether API keys are required, and
whether this server has the images API."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable

from fastapi import APIRouter, Request, Response

from taskmill.api.auth import KeyChecker
from taskmill.api.errors import ApiError

ASSETS_PATH = "/dashboard"
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
# Scripts, styles and API calls only from this server; images from anywhere, because
# renditions on S3 come from presigned URLs of another host.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data: http: https:; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    content_type: str
    etag: str

    @classmethod
    def of(cls, body: bytes, content_type: str) -> Asset:
        return cls(body, content_type, f'"{hashlib.sha256(body).hexdigest()[:32]}"')

    def response(self, request: Request, *, page: bool = False) -> Response:
        headers = {"etag": self.etag, "cache-control": "no-cache", **SECURITY_HEADERS}
        if page:
            headers["content-security-policy"] = CSP
        if self.etag in request.headers.get("if-none-match", ""):
            return Response(status_code=304, headers=headers)
        return Response(self.body, media_type=self.content_type, headers=headers)


def _files(root: Traversable, prefix: str = "") -> dict[str, Asset]:
    found: dict[str, Asset] = {}
    for entry in root.iterdir():
        name = f"{prefix}{entry.name}"
        if entry.is_dir():
            found.update(_files(entry, f"{name}/"))
            continue
        suffix = "." + entry.name.rsplit(".", 1)[-1]
        if suffix in CONTENT_TYPES:
            found[name] = Asset.of(entry.read_bytes(), CONTENT_TYPES[suffix])
    return found


def load_assets() -> dict[str, Asset]:
    """Every servable file of the dashboard directory, by path relative to it."""
    return _files(resources.files("taskmill.api") / "dashboard")


def router(keys: KeyChecker, *, images: bool) -> APIRouter:
    """The dashboard; `images`: whether this API serves /api/images (the page shows the
    gallery only then)."""
    api = APIRouter(include_in_schema=False)
    assets = load_assets()
    html = (
        assets.pop("index.html").body.decode()
        .replace("__AUTH__", "required" if keys.enabled else "none")
        .replace("__IMAGES__", "available" if images else "unavailable")
    )  # fmt: skip
    page = Asset.of(html.encode(), CONTENT_TYPES[".html"])

    @api.get("/")
    async def home(request: Request) -> Response:
        # Open like /docs: the page holds no data; everything it shows comes from /api.
        return page.response(request, page=True)

    @api.get(ASSETS_PATH + "/{name:path}")
    async def asset(name: str, request: Request) -> Response:
        found = assets.get(name)
        if found is None:
            raise ApiError(404, "not_found", f"no dashboard file {name!r}")
        return found.response(request)

    return api
