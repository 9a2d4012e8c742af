"""`/` and `/dashboard/*`: the dashboard's files, served by taskmill itself with the right
content types, revalidation headers and a strict content security policy."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from taskmill.api.routes.pages import load_assets

ASSETS = {
    "app.js": "text/javascript",
    "style.css": "text/css",
    "favicon.svg": "image/svg+xml",
}


def test_the_page_is_served_with_a_strict_policy(shared_client: TestClient) -> None:
    page = shared_client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "style-src 'self'" in policy
    assert "unsafe-inline" not in policy and "frame-ancestors 'none'" in policy
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["cache-control"] == "no-cache"
    assert 'data-auth="none"' in page.text
    assert re.search(r'data-images="(available|unavailable)"', page.text)


def test_the_page_references_only_files_of_its_own(shared_client: TestClient) -> None:
    page = shared_client.get("/").text
    urls = re.findall(r'(?:src|href)="([^"#]+)"', page)
    assert urls, page
    for url in urls:
        assert url.startswith("/"), f"{url}: the dashboard must work offline"
        if url.startswith("/dashboard/"):
            assert shared_client.get(url).status_code == 200, url


def test_every_module_the_scripts_import_is_served(shared_client: TestClient) -> None:
    scripts = {name: asset for name, asset in load_assets().items() if name.endswith(".js")}
    for name, asset in scripts.items():
        for imported in re.findall(r'from "\./([^"]+)"', asset.body.decode()):
            assert imported in scripts, f"{name} imports {imported}"
        assert "innerHTML" not in asset.body.decode(), f"{name}: build DOM nodes, not HTML"


@pytest.mark.parametrize(("name", "content_type"), ASSETS.items())
def test_assets_have_their_content_type_and_revalidate(
    shared_client: TestClient, name: str, content_type: str
) -> None:
    first = shared_client.get(f"/dashboard/{name}")
    assert first.status_code == 200
    assert first.headers["content-type"].startswith(content_type)
    assert first.headers["cache-control"] == "no-cache"
    etag = first.headers["etag"]
    again = shared_client.get(f"/dashboard/{name}", headers={"if-none-match": etag})
    assert again.status_code == 304 and again.content == b""


@pytest.mark.parametrize("name", ["nope.js", "../app.py", "index.html"])
def test_unknown_files_are_404(shared_client: TestClient, name: str) -> None:
    response = shared_client.get(f"/dashboard/{name}")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_with_keys_the_page_opens_and_tells_the_script_to_ask_for_one(keyed: TestClient) -> None:
    page = keyed.get("/")
    assert page.status_code == 200 and 'data-auth="required"' in page.text
    assert keyed.get("/dashboard/app.js").status_code == 200
    assert keyed.get("/api/stats").status_code == 401
