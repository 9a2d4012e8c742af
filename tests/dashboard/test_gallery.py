"""The Images gallery in Chromium against a real `taskmill up` with the built-in app (the
image tasks included), each in a fresh directory (SQLite and a local media folder): a JPEG
and a truncated one uploaded over HTTP, renditions made by real worker processes, the
thumbnail loaded by the browser through the signed /media URL the API hands out. Once
without API keys, once with them (an <img> cannot send the key, so the signature must be
enough). Every test also fails on console errors (see `watched` in conftest.py)."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image as PILImage
from playwright.sync_api import Browser, Locator, Page, Request, expect

from tests.acceptance.test_up import Up
from tests.dashboard.conftest import ARTIFACTS
from tests.images.helpers import truncated_copy, write_jpeg

BUILTIN_APP = "taskmill.builtin:app"
SECRET = "gallery-test-secret"
API_KEY = "gallery-test-key"
# What each link of a completed 800 x 600 upload serves, by its label in the gallery.
FILES = {
    "original": (800, 600),
    "thumbnail": (300, 300),
    "resized": (800, 600),  # fits 1024 x 1024 already: never upscaled
    "compressed": (800, 600),
}


@dataclass
class Uploads:
    """A running `taskmill up` and the two images uploaded to it: `photo` (800 x 600) and
    `truncated` (its first half)."""

    up: Up
    headers: dict[str, str]
    photo: str = ""
    truncated: str = ""

    @property
    def url(self) -> str:
        return self.up.url

    def upload(self, path: Path) -> str:
        with path.open("rb") as f:
            response = httpx.post(
                f"{self.url}/api/images", files={"file": (path.name, f, "image/jpeg")},
                headers=self.headers, timeout=30,
            )  # fmt: skip
        assert response.status_code == 202, response.text
        image_id: str = response.json()["id"]
        return image_id

    def image(self, image_id: str) -> dict[str, Any]:
        response = httpx.get(f"{self.url}/api/images/{image_id}", headers=self.headers, timeout=10)
        assert response.status_code == 200, response.text
        found: dict[str, Any] = response.json()
        return found


def serve_uploads(directory: Path, key: str | None) -> Iterator[Uploads]:
    env = {"TASKMILL_SECRET_KEY": SECRET}
    if key:
        env["TASKMILL_API_KEYS"] = key
    up = Up(directory, "-A", BUILTIN_APP, **env)
    try:
        up.wait_serving()
        uploads = Uploads(up, {"authorization": f"Bearer {key}"} if key else {})
        files = directory / "files"
        files.mkdir()
        photo = write_jpeg(files / "photo.jpg", 800, 600)
        uploads.photo = uploads.upload(photo)
        uploads.truncated = uploads.upload(truncated_copy(photo, files / "truncated.jpg"))
        yield uploads
    finally:
        up.close()
        print(f"--- up.log ---\n{up.log()[-4000:]}")


# Both ask for `browser` first: without one, the test is skipped (or fails under CI=true)
# before a server starts.
@pytest.fixture(scope="module")
def gallery(browser: Browser, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Uploads]:
    yield from serve_uploads(tmp_path_factory.mktemp("gallery"), key=None)


@pytest.fixture(scope="module")
def keyed_gallery(browser: Browser, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Uploads]:
    yield from serve_uploads(tmp_path_factory.mktemp("gallery-keyed"), key=API_KEY)


def card(page: Page, image_id: str) -> Locator:
    return page.locator(f'li[data-image="{image_id}"]')


def test_uploads_show_with_a_loaded_thumbnail_working_links_and_their_error(
    page: Page, gallery: Uploads
) -> None:
    page.goto(f"{gallery.url}/#/images")
    expect(page.locator("#conn")).to_have_text("Live")

    done = card(page, gallery.photo)
    expect(done).to_have_attribute("data-status", "completed")
    expect(done.locator(".badge")).to_have_text("completed")
    thumbnail = done.locator(".image-frame img")
    expect(thumbnail).to_have_js_property("naturalWidth", 300)  # fetched and decoded
    expect(thumbnail).to_have_js_property("naturalHeight", 300)
    expect(done.locator(".image-size")).to_have_text(re.compile(r"^800 \u00d7 600 \u00b7 "))
    links = done.locator(".file-links a")
    expect(links).to_have_text(list(FILES))
    hrefs = [str(links.nth(i).get_attribute("href")) for i in range(len(FILES))]
    expect(thumbnail).to_have_attribute("src", hrefs[1])
    for (name, size), href in zip(FILES.items(), hrefs, strict=True):
        assert href.startswith(f"{gallery.url}/media/"), href
        served = httpx.get(href, timeout=10)
        assert served.status_code == 200, (name, served.text)
        assert served.headers["content-type"] == "image/jpeg", name
        with PILImage.open(io.BytesIO(served.content)) as decoded:
            assert (decoded.format, decoded.size) == ("JPEG", size), name

    failed = card(page, gallery.truncated)
    expect(failed).to_have_attribute("data-status", "failed")
    expect(failed.locator(".badge")).to_have_text("failed")
    error = gallery.image(gallery.truncated)["error"]
    assert "truncated" in error, error
    expect(failed.locator(".error-text")).to_have_text(error)
    expect(failed.locator("img")).to_have_count(0)  # nothing to preview

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / "dashboard-gallery-1280.png", full_page=True)


def test_with_api_keys_the_thumbnail_loads_from_its_signed_url_alone(
    page: Page, keyed_gallery: Uploads
) -> None:
    url = keyed_gallery.url
    assert httpx.get(f"{url}/api/images", timeout=10).status_code == 401  # keys are enforced
    requests: list[Request] = []
    # Not requests.append itself: Playwright cannot wrap a built-in method.
    page.on("request", lambda request: requests.append(request))  # noqa: PLW0108
    page.goto(f"{url}/#/images")
    expect(page.locator("#login")).to_be_visible()
    page.get_by_label("API key", exact=True).fill(API_KEY)
    page.get_by_role("button", name="Open the dashboard").click()
    expect(page.locator("#conn")).to_have_text("Live")

    done = card(page, keyed_gallery.photo)
    expect(done).to_have_attribute("data-status", "completed")
    expect(done.locator(".image-frame img")).to_have_js_property("naturalWidth", 300)
    expect(card(page, keyed_gallery.truncated)).to_have_attribute("data-status", "failed")
    # The page's fetch() calls carry the key; the <img> could not, and needed not.
    calls = [r for r in requests if "/api/images" in r.url]
    media = [r for r in requests if "/media/" in r.url]
    assert calls and all(r.all_headers().get("authorization") for r in calls)
    assert media and not [r.url for r in media if "authorization" in r.all_headers()]
