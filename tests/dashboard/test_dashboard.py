"""The dashboard in Chromium against a real `taskmill up`: live counts, jobs (filter, pages,
detail, Cancel, Retry), the submit form, workers (a stale one too), images, API keys, the
connection banner, and the overview at phone width. Every test also fails on any console
error or uncaught exception the page produced (see `watched` in conftest.py)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, Route, WebSocketRoute, expect

from taskmill.store.base import WorkerInfo
from tests.api.servers import ApiServer
from tests.dashboard.conftest import ARTIFACTS, TIMEOUT_MS, Server, Watched
from tests.helpers import RawDb, make_app, wait_until

API_KEY = "dashboard-test-key"
OLDER = re.compile(r"^Older")


def ago(seconds: float) -> datetime:
    return datetime.now(UTC) - timedelta(seconds=seconds)


def open_view(page: Page, server: Server, route: str = "#/overview") -> None:
    page.goto(f"{server.url}/{route}")
    expect(page.locator("#conn")).to_have_text("Live")


def card(page: Page, stat: str) -> Any:
    return page.locator(f'[data-stat="{stat}"] .card-value')


# -- overview -------------------------------------------------------------------------------


def test_the_overview_loads_live_without_console_errors(page: Page, server: Server) -> None:
    open_view(page, server)
    expect(page.locator(".view-title")).to_have_text("Overview")
    expect(card(page, "workers")).to_have_text("1")
    expect(card(page, "pending")).to_have_text(re.compile(r"^\d"))
    expect(page.locator("svg.chart")).to_be_visible()
    expect(page.locator("#banner")).to_be_hidden()
    expect(page.locator('nav a[aria-current="page"]')).to_have_text("Overview")


def test_jobs_enqueued_elsewhere_change_the_counts_without_a_reload(
    page: Page, server: Server
) -> None:
    open_view(page, server)
    row = page.locator('tr[data-queue="live-check"]')
    expect(row).to_have_count(0)
    for i in range(3):  # delayed: they stay pending while the test looks
        server.submit("add", args=[i, i], queue="live-check", delay=3600)
    expect(row.locator('[data-col="pending"]')).to_have_text("3")
    ids = [server.submit("add", args=[9, 9], queue="live-check")]
    server.wait_for_job(ids[0], "completed")
    expect(row.locator('[data-col="completed"]')).to_have_text("1")
    assert page.evaluate("performance.getEntriesByType('navigation').length") == 1  # no reload


def test_the_throughput_chart_shows_finished_jobs(page: Page, server: Server) -> None:
    server.wait_for_job(server.submit("add", args=[1, 1]), "completed")
    open_view(page, server)
    expect(page.locator("svg.chart .bar-completed").first).to_be_visible()
    expect(page.locator(".chart-summary")).to_contain_text("completed")


# -- jobs -----------------------------------------------------------------------------------


def test_jobs_filter_by_queue_and_state_and_page_with_the_cursor(
    page: Page, server: Server
) -> None:
    for i in range(30):
        server.submit("add", args=[i, i], queue="paging", delay=3600)
    open_view(page, server, "#/jobs?queue=paging")
    rows = page.locator("table.jobs tbody tr")
    expect(rows).to_have_count(25)
    expect(rows.first.locator('[data-col="task"]')).to_have_text("add")
    page.get_by_role("button", name=OLDER).click()
    expect(rows).to_have_count(5)
    expect(page.get_by_role("button", name=OLDER)).to_be_disabled()
    page.get_by_role("button", name="Newest").click()
    expect(rows).to_have_count(25)
    page.get_by_label("State").select_option("failed")
    expect(page.locator(".empty-state")).to_contain_text("No job matches these filters")
    assert "status=failed" in page.url and "queue=paging" in page.url


def test_cancel_on_a_running_job_cancels_it(page: Page, server: Server) -> None:
    job_id = server.submit("sleep_for", args=[60])
    server.wait_for_job(job_id, "running")
    open_view(page, server, f"#/jobs/{job_id}")
    expect(page.locator(".status-slot")).to_have_attribute("data-status", "running")
    expect(page.get_by_role("progressbar")).to_be_visible()
    expect(page.get_by_role("button", name="Retry")).to_be_hidden()
    page.get_by_role("button", name="Cancel").click()
    expect(page.locator(".status-slot")).to_have_attribute("data-status", "cancelled")
    assert server.get(f"/api/tasks/{job_id}")["status"] == "cancelled"
    expect(page.get_by_role("button", name="Retry")).to_be_visible()


def test_retry_on_a_failed_job_runs_it_again(page: Page, server: Server) -> None:
    job_id = server.submit("fail_permanently", kwargs={"reason": "<b>bad</b> input"})
    failed = server.wait_for_job(job_id, "failed")
    open_view(page, server, f"#/jobs/{job_id}")
    expect(page.locator("#job-error pre").first).to_have_text("PermanentError: <b>bad</b> input")
    expect(page.locator("#job-error b")).to_have_count(0)  # shown as text, never as markup
    expect(page.get_by_role("button", name="Cancel")).to_be_hidden()
    page.get_by_role("button", name="Retry").click()
    expect(page.locator(".action-msg")).to_contain_text("Queued again")
    again = wait_until(
        lambda: (j := server.get(f"/api/tasks/{job_id}"))["status"] == "failed"
        and j["finished_at"] != failed["finished_at"] and j,
        timeout_s=20, interval_s=0.05, what="the retried job ran and failed anew",
    )  # fmt: skip
    assert again["attempts"] == 1  # a fresh attempt budget
    expect(page.locator(".status-slot")).to_have_attribute("data-status", "failed")


# -- submit ---------------------------------------------------------------------------------


def test_the_submit_form_enqueues_a_demo_task_that_completes(page: Page, server: Server) -> None:
    open_view(page, server, "#/submit")
    page.get_by_label("Task", exact=True).select_option("send_email")
    page.get_by_label("to", exact=True).fill("ops@example.com")
    page.get_by_label("subject", exact=True).fill("Dashboard test")
    page.get_by_label("Priority").fill("5")
    page.get_by_role("button", name="Enqueue job").click()
    link = page.locator(".outcome a.job-link")
    expect(link).to_be_visible()
    link.click()
    expect(page.locator(".status-slot")).to_have_attribute("data-status", "completed")
    job_id = page.url.rsplit("/", 1)[1]
    job = server.get(f"/api/tasks/{job_id}")
    assert (job["task"], job["priority"], job["queue"]) == ("send_email", 5, "high")
    assert job["kwargs"] == {"to": "ops@example.com", "subject": "Dashboard test"}
    expect(page.locator("#job-result pre")).to_contain_text('"status": "sent"')


def test_the_submit_form_shows_why_a_job_was_refused(watched: Watched, server: Server) -> None:
    page = watched.page
    watched.allow(r"status of 422")  # the refusal, logged by the browser
    open_view(page, server, "#/submit")
    page.get_by_label("Task", exact=True).select_option("add")
    page.get_by_label("a", exact=True).fill("1")
    page.get_by_label("b", exact=True).fill("2")
    page.get_by_label("Priority").fill("5000")  # out of range: the API says so
    page.get_by_label("Priority").evaluate("el => el.removeAttribute('max')")
    page.get_by_role("button", name="Enqueue job").click()
    expect(page.locator(".outcome .bad")).to_contain_text("Not enqueued")
    expect(page.locator(".outcome .bad")).to_contain_text("priority")


# -- workers --------------------------------------------------------------------------------


@pytest.fixture
def ghost_worker(server: Server) -> Iterator[str]:
    """A worker registered straight in the store that stopped heartbeating long ago (as one
    killed with kill -9 leaves itself)."""
    worker_id = "ghost-host:1:deadbeef"
    app = make_app(server.database_url)
    raw = RawDb(server.database_url)
    try:
        app.store.register_worker(WorkerInfo(worker_id, "ghost-host", 1, '["high"]', 4))
        raw.set_time("taskmill_workers", worker_id, "heartbeat_at", ago(600))
        yield worker_id
    finally:
        app.store.unregister_worker(worker_id)
        raw.close()
        app.close()


def test_workers_show_the_live_one_and_mark_a_stale_one(
    page: Page, server: Server, ghost_worker: str
) -> None:
    open_view(page, server, "#/workers")
    ghost = page.locator(f'tr[data-worker="{ghost_worker}"]')
    expect(ghost).to_have_attribute("data-state", "stale")
    expect(ghost.locator(".badge")).to_have_text("stale")
    expect(ghost.locator('[data-col="heartbeat"]')).to_contain_text("silent for 10 m")
    live = page.locator('tr[data-state="online"]')
    expect(live).to_have_count(1)
    expect(live.locator('[data-col="running"]')).to_have_text("0 / 2")
    page.goto(f"{server.url}/#/overview")
    expect(page.locator('[data-stat="workers"] .card-note')).to_contain_text("1 stale")


# -- images ---------------------------------------------------------------------------------


def test_without_the_images_api_the_gallery_says_it_is_unavailable(
    page: Page, server: Server
) -> None:
    open_view(page, server, "#/images")
    expect(page.locator(".empty-state")).to_contain_text("not available on this server")


def fake_images(route: Route) -> None:
    thumb = {"url": "/dashboard/favicon.svg", "width": 300, "height": 300, "bytes": 1200,
             "format": "svg"}  # fmt: skip
    images = [
        {"id": "01930000-0000-7000-8000-000000000002", "status": "completed",
         "original": {**thumb, "width": 1600, "height": 1000, "bytes": 250_000, "format": "jpeg"},
         "renditions": {"thumbnail": thumb, "resized": {**thumb, "url": "javascript:alert(1)"}},
         "error": None, "created_at": "2026-01-05T10:00:00Z",
         "completed_at": "2026-01-05T10:00:01Z"},
        {"id": "01930000-0000-7000-8000-000000000001", "status": "failed", "original": None,
         "renditions": {}, "error": '<img src=x onerror="alert(1)"> not an image',
         "created_at": "2026-01-05T09:59:00Z", "completed_at": None},
    ]  # fmt: skip
    route.fulfill(json={"images": images, "next_cursor": None})


# The page as a server with the images API serves it: the flag is flipped as <html> is
# parsed, before the (deferred) module scripts read it. Serving a rewritten page through
# route.fulfill instead would make Chromium treat it as a public page and block its
# WebSocket to loopback (local network access checks).
WITH_IMAGES_API = """
new MutationObserver((_, observer) => {
  if (document.documentElement) {
    document.documentElement.dataset.images = "available";
    observer.disconnect();
  }
}).observe(document, { childList: true });
"""


def test_the_gallery_shows_thumbnails_links_and_errors_as_text(page: Page, server: Server) -> None:
    page.add_init_script(WITH_IMAGES_API)
    page.route("**/api/images?*", fake_images)
    open_view(page, server, "#/images")
    done = page.locator('li[data-status="completed"]')
    expect(done.locator("img")).to_have_attribute("src", f"{server.url}/dashboard/favicon.svg")
    expect(done.locator(".image-size")).to_have_text("1600 \u00d7 1000 \u00b7 244 KiB")
    expect(done.get_by_role("link", name="thumbnail")).to_be_visible()
    expect(done.get_by_role("link", name="resized")).to_have_count(0)  # javascript: refused
    failed = page.locator('li[data-status="failed"]')
    expect(failed.locator(".error-text")).to_have_text(
        '<img src=x onerror="alert(1)"> not an image'
    )
    expect(failed.locator("img")).to_have_count(0)


# -- API keys -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    """`taskmill api` (no worker: the page needs none) with API keys."""
    directory = tmp_path_factory.mktemp("keyed")
    url = f"sqlite:///{directory}/taskmill.db"
    app = make_app(url)
    app.migrate()
    app.close()
    api = ApiServer(url, log_path=directory / "api.log", env={"TASKMILL_API_KEYS": API_KEY})
    with api:
        api.wait_ready()
        yield api


def test_with_api_keys_the_page_asks_for_one_and_works_with_it(
    watched: Watched, keyed_server: ApiServer
) -> None:
    page = watched.page
    watched.allow(r"status of 401")  # the wrong key's answer, logged by the browser
    page.goto(keyed_server.url + "/")
    expect(page.locator("#login")).to_be_visible()
    expect(page.locator("#shell")).to_be_hidden()
    expect(page.locator("#nav")).to_be_hidden()
    assert page.locator("#views").inner_html() == ""  # no data without a key

    page.get_by_label("API key", exact=True).fill("not-the-key")
    page.get_by_role("button", name="Open the dashboard").click()
    expect(page.locator("#login-error")).to_contain_text("refused")
    expect(page.locator("#shell")).to_be_hidden()

    page.get_by_label("API key", exact=True).fill(API_KEY)
    page.get_by_role("button", name="Open the dashboard").click()
    expect(page.locator("#conn")).to_have_text("Live")  # the WebSocket took ?token=
    expect(card(page, "pending")).to_have_text("0")
    page.reload()  # the key is kept for this tab
    expect(page.locator("#conn")).to_have_text("Live")
    page.get_by_role("button", name="Forget key").click()
    expect(page.locator("#login")).to_be_visible()
    page.reload()
    expect(page.locator("#login")).to_be_visible()


# -- connection trouble ---------------------------------------------------------------------


def test_a_lost_connection_shows_a_banner_and_reconnects_by_itself(
    watched: Watched, server: Server
) -> None:
    page = watched.page
    watched.allow(r"WebSocket|Failed to load resource|ERR_FAILED")  # what an outage looks like
    state = {"down": False}
    sockets: list[WebSocketRoute] = []

    def relay(ws: WebSocketRoute) -> None:
        if state["down"]:
            ws.close(code=1011, reason="server unavailable")
            return
        sockets.append(ws)
        ws.connect_to_server()

    def api(route: Route) -> None:
        if state["down"]:
            route.abort()
        else:
            route.continue_()

    page.route_web_socket("**/api/stats/ws", relay)
    page.route("**/api/**", api)
    open_view(page, server)

    state["down"] = True
    for ws in sockets:
        ws.close(code=1006, reason="")
    expect(page.locator("#conn")).to_have_text("Offline")
    banner = page.locator("#banner")
    expect(banner).to_be_visible()
    expect(banner).to_contain_text("Live updates stopped")
    expect(banner).to_contain_text("Reconnecting")

    state["down"] = False
    expect(page.locator("#conn")).to_have_text("Live", timeout=TIMEOUT_MS * 2)
    expect(banner).to_be_hidden(timeout=TIMEOUT_MS * 2)


# -- phone width, and the screenshots -------------------------------------------------------


@pytest.mark.parametrize(("width", "height"), [(1280, 900), (390, 844)])
def test_the_overview_fits_the_screen(
    browser: Browser, server: Server, width: int, height: int
) -> None:
    context = browser.new_context(viewport={"width": width, "height": height})
    try:
        server.submit("generate_report", kwargs={"name": "screens"}, delay=3600)
        page = context.new_page()
        open_view(page, server)
        expect(card(page, "workers")).to_have_text("1")
        expect(page.locator("svg.chart")).to_be_visible()
        expect(page.locator('tr[data-queue="low"]')).to_be_visible()
        overflow = page.evaluate(
            "[document.documentElement.scrollWidth, document.body.scrollWidth, innerWidth]"
        )
        assert max(overflow[:2]) <= overflow[2], f"the page scrolls sideways: {overflow}"
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=ARTIFACTS / f"dashboard-overview-{width}.png", full_page=True)
    finally:
        context.close()


def test_keyboard_users_can_reach_every_section(page: Page, server: Server) -> None:
    open_view(page, server)
    visited = []
    for _ in range(8):
        page.keyboard.press("Tab")
        focused = page.evaluate("document.activeElement.textContent.trim()")
        visited.append(focused)
    assert {"Overview", "Workers", "Jobs", "Submit", "Images"} <= set(visited), visited
    page.locator("nav a", has_text="Jobs").focus()
    page.keyboard.press("Enter")
    expect(page.locator(".view-title")).to_be_focused()
    expect(page.locator(".view-title")).to_have_text("Jobs")


def test_the_page_loads_only_from_its_own_server(page: Page, server: Server) -> None:
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    open_view(page, server)
    page.goto(f"{server.url}/#/jobs")
    expect(page.locator("table.jobs")).to_be_visible()
    foreign = [u for u in requested if not u.startswith((server.url, "ws://" + server.url[7:]))]
    assert not foreign, json.dumps(foreign)
