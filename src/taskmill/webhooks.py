"""Webhooks: a signed POST of an event's JSON to a client's URL, delivered by a job of its
own (so it retries with back-off), and the policy of which URLs it may go to."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any
from urllib.parse import SplitResult, urlsplit

from taskmill.config import Settings
from taskmill.context import current_job, running_app
from taskmill.errors import PermanentError, Retry, ValidationError
from taskmill.secrets import load_secret

if TYPE_CHECKING:
    import httpx

    from taskmill.app import Taskmill
    from taskmill.jobs import Job
    from taskmill.tasks import Task

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Taskmill-Signature"
TIMESTAMP_HEADER = "X-Taskmill-Timestamp"
EVENT_HEADER = "X-Taskmill-Event"
DELIVERY_HEADER = "X-Taskmill-Delivery"  # the job id: the same on every retry of one delivery

WEBHOOK_TASK = "taskmill.webhook"
WEBHOOK_QUEUE = "webhooks"
WEBHOOK_MAX_RETRIES = 8
WEBHOOK_TIMEOUT_S = 30.0  # the whole attempt, DNS included; the worker kills it after this
# 3 ** attempt with equal jitter: the 8 retries spread over roughly one to two hours, so a
# receiver that is down for a deploy or a short outage still gets the event.
WEBHOOK_BACKOFF = 3.0
SEND_TIMEOUT_S = 10.0
MAX_RETRY_AFTER_S = 3600.0  # a receiver cannot park a delivery for longer than this
DEFAULT_TOLERANCE_S = 300.0
MAX_URL_LENGTH = 2048
ALLOW_PRIVATE_HINT = "set TASKMILL_WEBHOOK_ALLOW_PRIVATE=true to allow private targets"

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


class WebhookRefused(ValidationError):
    """A webhook URL that taskmill will not call; the message says why."""


class UnresolvableHost(WebhookRefused):
    """The host has no address now. Refused at upload; retried at delivery, where it is
    more likely a DNS hiccup than a bad URL (it resolved when it was accepted)."""


# -- signing ----------------------------------------------------------------------------------


def encode_body(payload: Mapping[str, Any]) -> bytes:
    """The exact bytes that are sent and signed: compact, keys sorted."""
    return json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()


def sign(secret: bytes, body: bytes, timestamp: int) -> str:
    """`sha256=<hex>`: HMAC-SHA256 of `<timestamp>.<body>`. The timestamp is inside the
    MAC so a captured delivery cannot be replayed later under a fresh timestamp."""
    mac = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


def verify(
    secret: bytes,
    body: bytes,
    *,
    timestamp: str,
    signature: str,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
    now: float | None = None,
) -> bool:
    """Whether `signature` is ours for this body and timestamp, and the timestamp is
    within `tolerance_s` of `now` (either side, for clock skew). Never raises on
    malformed input; compares in constant time."""
    if not (timestamp.isascii() and timestamp.isdigit()):
        return False
    now = time.time() if now is None else now
    if abs(now - int(timestamp)) > tolerance_s:
        return False
    expected = sign(secret, body, int(timestamp)).encode()
    return hmac.compare_digest(expected, signature.encode("utf-8", "replace"))


# -- where webhooks may go --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Target:
    """A checked webhook URL and the addresses it resolved to, all of them allowed."""

    url: httpx.URL
    addresses: tuple[IPAddress, ...]


def check_target(url: str, *, allow_private: bool) -> None:
    """Refuse a URL a webhook must not be sent to, raising WebhookRefused with the reason:
    not http(s), no host, credentials in it, too long, a host that does not resolve
    (UnresolvableHost), or, unless `allow_private`, a host with ANY address that is
    loopback, private, link-local, multicast, reserved, unspecified or otherwise not
    public, including IPv4 addresses wrapped in IPv6 (mapped, 6to4, NAT64). Resolves the
    host, so it blocks for as long as DNS takes."""
    resolve_target(url, allow_private=allow_private)


def resolve_target(url: str, *, allow_private: bool) -> Target:
    """`check_target`, returning the addresses so the caller can connect to exactly those
    (a second lookup could answer differently: DNS rebinding)."""
    parts = _parse_url(url)
    host = parts.hostname or ""
    addresses = _resolve(host, parts.port or (443 if parts.scheme == "https" else 80))
    if not allow_private:
        literal = _ip_or_none(host) is not None
        for address in addresses:
            _refuse_if_private(host if not literal else None, address)
    import httpx  # here, not at the top: it pulls in rich and click, ~15 MiB per worker child

    return Target(httpx.URL(url), addresses)


def _parse_url(url: str) -> SplitResult:
    if len(url) > MAX_URL_LENGTH:
        raise WebhookRefused(f"webhook URL is longer than {MAX_URL_LENGTH} characters")
    if any(ord(c) <= 0x20 or ord(c) == 0x7F for c in url):
        raise WebhookRefused("webhook URL contains whitespace or control characters")
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https"):
        raise WebhookRefused(f"webhook URL must be http or https, not {parts.scheme or 'none'}")
    if not parts.hostname:
        raise WebhookRefused("webhook URL needs a host")
    if parts.username is not None or parts.password is not None:
        raise WebhookRefused("webhook URL must not contain a user name or password")
    try:
        parts.port  # noqa: B018 - parsing it is the check
    except ValueError as exc:
        raise WebhookRefused(f"webhook URL has an invalid port: {exc}") from None
    return parts


def _resolve(host: str, port: int) -> tuple[IPAddress, ...]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise UnresolvableHost(f"webhook URL: cannot resolve host {host!r}: {reason}") from None
    found: dict[IPAddress, None] = {}  # ordered, without duplicates
    for info in infos:
        found.setdefault(ipaddress.ip_address(str(info[4][0])), None)
    if not found:
        raise UnresolvableHost(f"webhook URL: cannot resolve host {host!r}: no addresses")
    return tuple(found)


def _ip_or_none(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _refuse_if_private(hostname: str | None, address: IPAddress) -> None:
    """Raise WebhookRefused when `address` is not a public one; `hostname` is the name it
    was resolved from (None for a literal address)."""
    wrapped = _embedded_ipv4(address)
    checked = wrapped[1] if wrapped else address
    kind = address_kind(checked)
    if kind is None:
        return
    where = f"{hostname!r} resolves to {address}" if hostname else str(address)
    if wrapped:
        where += f", the {wrapped[0]} form of {wrapped[1]}"
    raise WebhookRefused(f"webhook URL points at {kind}: {where} ({ALLOW_PRIVATE_HINT})")


def address_kind(address: IPAddress) -> str | None:
    """Why `address` is no place for a webhook ("a loopback address", ...), or None for a
    public address. The order matters: 0.0.0.0 is also "private", but "unspecified" says
    more."""
    checks = (
        ("an unspecified address", address.is_unspecified),
        ("a loopback address", address.is_loopback),
        ("a link-local address", address.is_link_local),
        ("a multicast address", address.is_multicast),
        ("a private address", address.is_private),
        ("a reserved address", address.is_reserved),
        ("a non-public address", not address.is_global),  # e.g. 100.64.0.0/10 (CGNAT)
    )
    return next((kind for kind, hit in checks if hit), None)


def _embedded_ipv4(address: IPAddress) -> tuple[str, ipaddress.IPv4Address] | None:
    """The IPv4 address an IPv6 one stands for, with the wrapping's name. What matters is
    where packets end up: ::ffff:127.0.0.1 reaches the loopback interface."""
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return "IPv4-mapped", address.ipv4_mapped
    if address.sixtofour is not None:
        return "6to4", address.sixtofour
    if address in _NAT64:
        return "NAT64", ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


# -- delivery ---------------------------------------------------------------------------------


def register_webhook_task(app: Taskmill) -> Task[..., Any]:
    """Register the delivery task `taskmill.webhook` on `app` (once; a second call returns
    the task already there). It POSTs `payload` to `url`, signed with the app's secret key;
    see `send_webhook` for what is retried."""
    if WEBHOOK_TASK in app.tasks:
        return app.tasks[WEBHOOK_TASK]

    @app.task(
        name=WEBHOOK_TASK, queue=WEBHOOK_QUEUE, max_retries=WEBHOOK_MAX_RETRIES,
        timeout=WEBHOOK_TIMEOUT_S, backoff=WEBHOOK_BACKOFF,
    )  # fmt: skip
    def deliver(url: str, event: str, payload: dict[str, Any]) -> dict[str, Any]:
        # The settings of the app the worker runs: a user app that included the built-in
        # tasks may have its own secret and target policy.
        running = running_app(app)
        return send_webhook(running.settings, url, event, payload)

    return deliver


def enqueue_webhook(
    app: Taskmill, url: str, event: str, payload: Mapping[str, Any], *, key: str
) -> Job:
    """Enqueue one delivery. The same `key` returns the job already enqueued, so a job that
    runs again (at-least-once) does not notify the receiver twice."""
    return app.enqueue(
        WEBHOOK_TASK,
        kwargs={"url": url, "event": event, "payload": dict(payload)},
        idempotency_key=key,
    )


def send_webhook(
    settings: Settings, url: str, event: str, payload: Mapping[str, Any]
) -> dict[str, Any]:
    """One delivery attempt, inside a running job. Returns {"status", "attempt"} on 2xx.

    Raises Retry (back-off, or the receiver's Retry-After) for 5xx, 408, 429, network
    errors and a host that does not resolve now; PermanentError for any other answer
    (redirects are not followed) and for a URL the target policy refuses now."""
    job = current_job()
    try:
        target = resolve_target(url, allow_private=settings.webhook_allow_private)
    except UnresolvableHost as exc:
        raise Retry(reason=str(exc)) from None
    except WebhookRefused as exc:
        raise PermanentError(str(exc)) from None
    body = encode_body(payload)
    timestamp = int(time.time())  # fresh on every attempt, so retries pass the replay window
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        SIGNATURE_HEADER: sign(load_secret(settings), body, timestamp),
        TIMESTAMP_HEADER: str(timestamp),
        EVENT_HEADER: event,
        DELIVERY_HEADER: job.id,
    }
    status, retry_after = _post(target, body, headers)
    if 200 <= status < 300:
        log.info(
            "webhook %s delivered: %s answered %d", job.id, target.url.host, status,
            extra={"action": "webhook_delivered", "job_id": job.id},
        )  # fmt: skip
        return {"status": status, "attempt": job.attempt}
    if status in (408, 429) or status >= 500:
        delay_s = retry_after_s(retry_after)
        raise Retry(delay_s, f"{target.url.host} answered {status}")
    raise PermanentError(f"{target.url.host} answered {status}; not retried")


def _post(target: Target, body: bytes, headers: dict[str, str]) -> tuple[int, str | None]:
    """POST to the checked addresses in turn until one accepts the connection; returns the
    status and Retry-After. The body of the answer is never read: a receiver cannot make
    the worker download anything."""
    import httpx

    url = target.url
    pinned_headers = {**headers, "Host": url.netloc.decode("ascii")}
    extensions = {"sni_hostname": url.raw_host.decode("ascii")} if url.scheme == "https" else {}
    last_error: httpx.TransportError | None = None
    # trust_env=False: a proxy from the environment would connect on our behalf, to
    # addresses this process never checked.
    with httpx.Client(timeout=SEND_TIMEOUT_S, follow_redirects=False, trust_env=False) as client:
        for address in target.addresses:
            request = client.build_request(
                "POST", url.copy_with(host=str(address)), content=body,
                headers=pinned_headers, extensions=extensions,
            )  # fmt: skip
            try:
                response = client.send(request, stream=True)
            except httpx.ConnectError as exc:
                last_error = exc
                continue
            except httpx.TransportError as exc:
                raise Retry(reason=f"{url.host}: {type(exc).__name__}: {exc}") from None
            response.close()
            return response.status_code, response.headers.get("retry-after")
    raise Retry(reason=f"cannot connect to {url.host}: {last_error}")


def retry_after_s(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date), at most
    MAX_RETRY_AFTER_S; None when absent or unreadable (then the usual back-off applies)."""
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return min(float(value), MAX_RETRY_AFTER_S)
    try:
        when = parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    now = time.time() if now is None else now
    return min(max(0.0, when - now), MAX_RETRY_AFTER_S)


def _user_agent() -> str:
    try:
        return f"taskmill/{version('taskmill')}"
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "taskmill"


USER_AGENT = _user_agent()
