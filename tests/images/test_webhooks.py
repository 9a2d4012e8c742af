"""Webhooks: signing and its replay window, the target policy, and delivery through a real
`taskmill worker` to real HTTP receivers on loopback (allowed by
TASKMILL_WEBHOOK_ALLOW_PRIVATE, as in development)."""

from __future__ import annotations

import contextlib
import re
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from taskmill import Job, JobContext, JobStatus, PermanentError, Retry, Taskmill
from taskmill.config import Settings
from taskmill.context import bind_job, unbind_job
from taskmill.secrets import load_secret
from taskmill.webhooks import (
    DELIVERY_HEADER,
    EVENT_HEADER,
    MAX_RETRY_AFTER_S,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WEBHOOK_QUEUE,
    WEBHOOK_TASK,
    UnresolvableHost,
    WebhookRefused,
    check_target,
    encode_body,
    enqueue_webhook,
    register_webhook_task,
    retry_after_s,
    send_webhook,
    sign,
    verify,
)
from tests.helpers import RawDb, wait_until
from tests.http_servers import serving
from tests.integration.workers import WorkerProcess
from tests.processes import ROOT

SECRET_KEY = "webhook-test-secret"
PAYLOAD = {"id": "img-1", "status": "completed", "renditions": {"thumbnail": {"width": 300}}}
DOC = ROOT / "docs" / "webhooks.md"

# What the worker subprocess loads with `-A tests.images.test_webhooks:worker_app`; it reads
# the secret, the database and the private-target switch from its environment.
worker_app = Taskmill()
register_webhook_task(worker_app)


# -- a receiver -------------------------------------------------------------------------------


@dataclass
class Received:
    headers: dict[str, str]  # names lower-cased
    body: bytes
    path: str


@dataclass
class Receiver:
    """An HTTP server on 127.0.0.1 that answers POSTs with scripted statuses (then 200) and
    keeps every request it got."""

    answers: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    url: str = ""

    def wait_for(self, count: int) -> list[Received]:
        wait_until(lambda: len(self.received) >= count, what=f"{count} requests received")
        return self.received


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            headers = {k.lower(): v for k, v in self.headers.items()}
            receiver.received.append(Received(headers, body, self.path))
            status, extra = receiver.answers.pop(0) if receiver.answers else (200, {})
            self.send_response(status)
            for name, value in {"Content-Length": "0", **extra}.items():
                self.send_header(name, value)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    made = Receiver()
    with serving(_handler(made)) as base:
        made.url = f"{base}/hook"
        yield made


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def settings(**changes: Any) -> Settings:
    base = {"secret_key": SECRET_KEY, "webhook_allow_private": True, **changes}
    return Settings.from_env({}, **base)


@contextlib.contextmanager
def as_job(job_id: str = "00000000-0000-7000-8000-00000000beef") -> Iterator[None]:
    """Run the block as attempt 1 of a job, as a worker child would."""
    token = bind_job(JobContext(job_id, WEBHOOK_TASK, 1, lambda *_: None))
    try:
        yield
    finally:
        unbind_job(token)


def signed_by_us(request: Received, key: bytes) -> bool:
    return verify(
        key, request.body,
        timestamp=request.headers[TIMESTAMP_HEADER.lower()],
        signature=request.headers[SIGNATURE_HEADER.lower()],
    )  # fmt: skip


# -- signing ----------------------------------------------------------------------------------


def test_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    signature = sign(b"k", b'{"a":1}', 1700000000)
    # Independently computed: printf '1700000000.{"a":1}' | openssl dgst -sha256 -hmac k
    hex_mac = "1b6ad1bc9bf48c52ce01939866d5877c6cc4e87ddad27e16673cb8c4964394a3"
    assert signature == f"sha256={hex_mac}"


def test_verify_accepts_ours_and_refuses_tampering_and_replays() -> None:
    body, now = b'{"a":1}', 1_700_000_000.0
    good = sign(b"key", body, int(now))

    def check(secret: bytes = b"key", data: bytes = body, ts: str = str(int(now)),
              sig: str = good, at: float = now) -> bool:  # fmt: skip
        return verify(secret, data, timestamp=ts, signature=sig, now=at)

    assert check()
    assert check(at=now + 299) and check(at=now - 299)  # clock skew either way
    assert not check(data=b'{"a":2}')
    assert not check(secret=b"other")
    assert not check(ts=str(int(now) + 1))  # the timestamp is signed too
    assert not check(at=now + 301), "an old delivery replayed later"
    assert not check(at=now - 301), "a timestamp from the future"
    for bad_ts in ("", "abc", "-1", "1.5", "\u0661\u0667"):
        assert not check(ts=bad_ts)
    for bad_sig in ("", "sha256=", good.upper(), good[:-1], "sha256=\u00e9" + good[8:]):
        assert not check(sig=bad_sig)


def test_retry_after_reads_seconds_and_dates_and_is_capped() -> None:
    now = datetime(2030, 1, 1, tzinfo=UTC)
    assert retry_after_s(None) is None
    assert retry_after_s("0") == 0.0
    assert retry_after_s(" 120 ") == 120.0
    assert retry_after_s("999999") == MAX_RETRY_AFTER_S
    in_90_s = format_datetime(now + timedelta(seconds=90), usegmt=True)
    assert retry_after_s(in_90_s, now=now.timestamp()) == 90.0
    past = format_datetime(now - timedelta(days=1), usegmt=True)
    assert retry_after_s(past, now=now.timestamp()) == 0.0
    assert retry_after_s("soon") is None
    assert retry_after_s("-5") is None


# -- the target policy -----------------------------------------------------------------------

HINT = "TASKMILL_WEBHOOK_ALLOW_PRIVATE=true"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://127.0.0.1/hook", "points at a loopback address: 127.0.0.1 ("),
        ("http://10.1.2.3:8080/", "points at a private address: 10.1.2.3 ("),
        ("https://192.168.0.10/", "points at a private address: 192.168.0.10 ("),
        ("http://169.254.169.254/latest/meta-data", "a link-local address: 169.254.169.254 ("),
        ("http://[::1]:9000/", "points at a loopback address: ::1 ("),
        ("http://[fe80::1]/", "points at a link-local address: fe80::1 ("),
        ("http://[fd00::1]/", "points at a private address: fd00::1 ("),
        ("http://0.0.0.0/", "points at an unspecified address: 0.0.0.0 ("),
        ("http://224.0.0.1/", "points at a multicast address: 224.0.0.1"),
        ("http://100.64.0.1/", "points at a non-public address: 100.64.0.1"),
        (
            "http://[::ffff:127.0.0.1]/",
            "loopback address: ::ffff:7f00:1, the IPv4-mapped form of 127.0.0.1 (",
        ),
        ("http://[2002:a00:1::]/", "private address: 2002:a00:1::, the 6to4 form of 10.0.0.1"),
        ("http://[64:ff9b::a9fe:a9fe]/", "the NAT64 form of 169.254.169.254"),
        ("http://localhost:8000/", "loopback address: 'localhost' resolves to "),
    ],
)
def test_private_targets_are_refused_with_the_reason(url: str, message: str) -> None:
    with pytest.raises(WebhookRefused) as refused:
        check_target(url, allow_private=False)
    assert message in str(refused.value) and HINT in str(refused.value)
    check_target(url.replace("localhost", "127.0.0.1"), allow_private=True)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://example.com/file", "webhook URL must be http or https, not ftp"),
        ("example.com/hook", "webhook URL must be http or https, not none"),
        ("javascript:alert(1)", "must be http or https, not javascript"),
        ("http:///hook", "webhook URL needs a host"),
        ("https://user:pw@example.com/", "must not contain a user name or password"),
        ("https://token@example.com/", "must not contain a user name or password"),
        ("http://example.com:99999/", "webhook URL has an invalid port"),
        ("http://exa mple.com/", "contains whitespace or control characters"),
        ("http://example.com/\n", "contains whitespace or control characters"),
        ("http://example.com/" + "a" * 2048, "webhook URL is longer than 2048 characters"),
        ("http://no-such-host.invalid/", "cannot resolve host 'no-such-host.invalid'"),
    ],
)
def test_malformed_targets_are_refused_even_when_private_ones_are_allowed(
    url: str, message: str
) -> None:
    for allow_private in (False, True):
        with pytest.raises(WebhookRefused, match=re.escape(message)):
            check_target(url, allow_private=allow_private)


def test_public_addresses_pass_and_dns_failure_is_its_own_refusal() -> None:
    check_target("https://93.184.215.14/hook?x=1", allow_private=False)
    check_target("http://[2606:4700:4700::1111]:8080/", allow_private=False)
    check_target("http://[::ffff:8.8.8.8]/", allow_private=False)  # wraps a public address
    with pytest.raises(UnresolvableHost):
        check_target("http://no-such-host.invalid/", allow_private=True)


# -- one attempt, in this process -------------------------------------------------------------


def test_an_attempt_rechecks_the_target_and_fails_for_good(receiver: Receiver) -> None:
    with as_job(), pytest.raises(PermanentError, match="points at a loopback address"):
        send_webhook(settings(webhook_allow_private=False), receiver.url, "image.completed", {})
    assert receiver.received == []


def test_the_request_goes_to_the_address_that_was_checked(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One lookup per attempt, and the connection goes to its answer: a name cannot pass
    the check with one address and be connected to at another (DNS rebinding)."""
    lookups: list[str] = []
    real_getaddrinfo = socket.getaddrinfo

    def resolver(host: Any, *args: Any, **kwargs: Any) -> Any:
        lookups.append(str(host))
        return real_getaddrinfo("127.0.0.1" if host == "hooks.test" else host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    port = receiver.url.split(":")[2].split("/")[0]
    with as_job():
        result = send_webhook(settings(), f"http://hooks.test:{port}/hook", "image.completed", {})
    assert result == {"status": 200, "attempt": 1}
    assert lookups.count("hooks.test") == 1, lookups  # the connection used the address
    [got] = receiver.wait_for(1)
    assert got.headers["host"] == f"hooks.test:{port}"  # virtual hosts still see their name


def test_an_unreachable_receiver_is_retried_with_back_off() -> None:
    url = f"http://127.0.0.1:{closed_port()}/hook"
    with as_job(), pytest.raises(Retry, match=r"cannot connect to 127\.0\.0\.1") as retry:
        send_webhook(settings(), url, "image.completed", PAYLOAD)
    assert retry.value.delay is None  # None: the task's exponential back-off


@pytest.mark.parametrize(
    ("status", "headers", "outcome", "delay_s"),
    [
        (503, {"Retry-After": "7"}, Retry, 7.0),
        (429, {}, Retry, None),
        (408, {}, Retry, None),
        (500, {"Retry-After": "garbage"}, Retry, None),
        (404, {}, PermanentError, None),
        (301, {"Location": "http://127.0.0.1:1/elsewhere"}, PermanentError, None),
    ],
)
def test_how_each_answer_is_classified(
    receiver: Receiver,
    status: int,
    headers: dict[str, str],
    outcome: type[Exception],
    delay_s: float | None,
) -> None:
    receiver.answers.append((status, headers))
    with as_job(), pytest.raises(outcome, match=f"answered {status}") as raised:
        send_webhook(settings(), receiver.url, "image.completed", PAYLOAD)
    if isinstance(raised.value, Retry):
        assert raised.value.delay == delay_s
    assert len(receiver.received) == 1  # a redirect is not followed


def test_the_receiver_snippet_in_the_docs_verifies_a_real_delivery(receiver: Receiver) -> None:
    """The doc's code runs here as a receiver would run it, with the key as a receiver
    knows it (TASKMILL_SECRET_KEY) — so the page cannot drift from what is sent."""
    match = re.search(r"<!-- verify-snippet.*?-->\n```python\n(.*?)```", DOC.read_text(), re.S)
    assert match, f"no verify-snippet block in {DOC}"
    snippet = match.group(1)
    assert len([line for line in snippet.splitlines() if line.strip()]) <= 5
    assert set(re.findall(r"^import (.+)$", snippet, re.M)) == {"hashlib, hmac, time"}
    namespace: dict[str, Any] = {}
    exec(compile(snippet, str(DOC), "exec"), namespace)
    receiver_verify: Callable[[bytes, bytes, str, str], bool] = namespace["verify"]

    with as_job():
        send_webhook(settings(), receiver.url, "image.completed", PAYLOAD)
    got = receiver.wait_for(1)[0]
    ts, sig = got.headers["x-taskmill-timestamp"], got.headers["x-taskmill-signature"]
    key = SECRET_KEY.encode()
    assert receiver_verify(key, got.body, ts, sig)
    assert not receiver_verify(key, got.body.replace(b"img-1", b"img-2"), ts, sig)
    assert not receiver_verify(b"another key", got.body, ts, sig)
    old = str(int(ts) - 3600)
    assert not receiver_verify(key, got.body, old, sign(key, got.body, int(old)))


# -- delivery through the queue, by a real worker --------------------------------------------


@dataclass
class Delivery:
    app: Taskmill
    raw_db: RawDb

    def wait_for(self, job_id: str, predicate: Callable[[Job], bool], what: str) -> Job:
        return wait_until(
            lambda: (job := self.app.get(job_id)) and predicate(job) and job,
            timeout_s=15, interval_s=0.02, what=what,
        )  # fmt: skip

    def final(self, job_id: str) -> Job:
        return self.app.wait(job_id, timeout=15)


@pytest.fixture(scope="module")
def delivery(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Delivery]:
    """One worker (`-Q webhooks`) for the module's delivery tests, on a SQLite database of
    their own; each test has its own receiver, so they do not see each other's jobs."""
    tmp: Path = tmp_path_factory.mktemp("webhooks")
    url = f"sqlite:///{tmp}/taskmill.db"
    app = Taskmill(settings=settings(database_url=url))
    register_webhook_task(app)
    app.migrate()
    env = {"TASKMILL_SECRET_KEY": SECRET_KEY, "TASKMILL_WEBHOOK_ALLOW_PRIVATE": "true"}
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        worker = WorkerProcess(
            url, "-A", "tests.images.test_webhooks:worker_app", "-Q", WEBHOOK_QUEUE, "-c", "1",
            log_path=tmp / "worker.log",
        )  # fmt: skip
    raw_db = RawDb(url)
    try:
        worker.wait_started()
        yield Delivery(app, raw_db)
    finally:
        worker.close()
        raw_db.close()
        app.close()
        print(f"--- worker log ---\n{worker.log()[-4000:]}")


def test_delivered_once_with_a_valid_signature(delivery: Delivery, receiver: Receiver) -> None:
    job = enqueue_webhook(delivery.app, receiver.url, "image.completed", PAYLOAD, key="img-1")
    assert (job.task, job.queue, job.max_retries, job.timeout_s) == (
        WEBHOOK_TASK, WEBHOOK_QUEUE, 8, 30.0,
    )  # fmt: skip
    again = enqueue_webhook(delivery.app, receiver.url, "image.completed", PAYLOAD, key="img-1")
    assert again.id == job.id, "the same key must not make a second delivery"

    done = delivery.final(job.id)
    assert done.status is JobStatus.COMPLETED, done.error
    assert done.result == {"status": 200, "attempt": 1}
    [got] = receiver.wait_for(1)
    assert got.path == "/hook" and got.body == encode_body(PAYLOAD)
    assert got.headers["content-type"] == "application/json"
    assert got.headers[EVENT_HEADER.lower()] == "image.completed"
    assert got.headers[DELIVERY_HEADER.lower()] == job.id
    assert got.headers["user-agent"].startswith("taskmill/")
    assert got.headers["host"] == receiver.url.split("/")[2]
    key = load_secret(delivery.app.settings)
    assert signed_by_us(got, key)
    assert not signed_by_us(Received(got.headers, got.body.replace(b"300", b"301"), ""), key)


def test_a_server_error_is_retried_after_back_off_then_delivered(
    delivery: Delivery, receiver: Receiver
) -> None:
    receiver.answers.append((500, {}))
    job = enqueue_webhook(delivery.app, receiver.url, "image.failed", PAYLOAD, key="img-500")
    waiting = delivery.wait_for(
        job.id, lambda j: j.status is JobStatus.PENDING and j.attempts == 1, "first attempt done"
    )
    assert waiting.error is not None and "answered 500" in waiting.error
    backoff_s = (waiting.scheduled_at - datetime.now(UTC)).total_seconds()
    assert 0.5 < backoff_s <= 3.0, "3 ** 1 seconds with jitter, less the time since"
    # Skip the wait: the back-off is retry.py's to test; here it only has to be there.
    delivery.raw_db.set_time("taskmill_jobs", job.id, "scheduled_at", datetime.now(UTC))

    done = delivery.final(job.id)
    assert done.status is JobStatus.COMPLETED and done.attempts == 2, done.error
    assert done.result == {"status": 200, "attempt": 2}
    first, second = receiver.wait_for(2)
    assert first.headers[DELIVERY_HEADER.lower()] == second.headers[DELIVERY_HEADER.lower()]
    assert first.body == second.body
    key = load_secret(delivery.app.settings)
    assert signed_by_us(first, key) and signed_by_us(second, key)


def test_retry_after_zero_comes_back_at_once(delivery: Delivery, receiver: Receiver) -> None:
    receiver.answers.append((503, {"Retry-After": "0"}))
    job = enqueue_webhook(delivery.app, receiver.url, "image.completed", PAYLOAD, key="img-503")
    done = delivery.final(job.id)
    assert done.status is JobStatus.COMPLETED and done.attempts == 2, done.error
    assert len(receiver.received) == 2


def test_gone_fails_without_retries(delivery: Delivery, receiver: Receiver) -> None:
    receiver.answers.append((410, {}))
    job = enqueue_webhook(delivery.app, receiver.url, "image.completed", PAYLOAD, key="img-410")
    done = delivery.final(job.id)
    assert done.status is JobStatus.FAILED and done.attempts == 1
    assert done.error is not None and "answered 410; not retried" in done.error
    assert len(receiver.received) == 1
