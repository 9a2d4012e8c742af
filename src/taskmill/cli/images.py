"""`taskmill image FILE...`: upload images through the HTTP API (the API does the work, so
this runs anywhere the API can be reached), follow them, and print their renditions."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import httpx
from rich.console import Console
from rich.filesize import decimal
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)
from rich.table import Table
from rich.text import Text

from taskmill.cli.output import console, print_json
from taskmill.config import Settings
from taskmill.errors import TaskmillError

UPLOAD_PATH = "/api/images"
FINAL = ("completed", "failed")
RENDITION_ORDER = ("resized", "compressed", "thumbnail")
DEFAULT_WAIT_S = 600.0
POLL_FIRST_S = 0.2  # most images are done within a second or two: look early...
POLL_MAX_S = 2.0  # ...then back off, so a long wait costs the API little
POLL_FAILURES_MAX = 5  # consecutive failed polls (an API restart) before giving up
HTTP_TIMEOUT = httpx.Timeout(60.0, connect=5.0)
UNBOUNDED_WIDTH = 10_000  # to measure a table's natural width

err_console = Console(stderr=True)


class ApiFatal(click.ClickException):
    """Every other file would fail the same way: stop, and say so once."""


class ApiUnreachable(ApiFatal):
    """No answer from the API at all."""


@dataclass(eq=False)  # compared and hashed by identity, as exceptions are
class ApiFailure(Exception):
    """The API answered with an error (or the file could not be sent): this file only."""

    status: int | None
    code: str
    message: str

    def __str__(self) -> str:
        status = f"{self.status} " if self.status is not None else ""
        return f"{status}{self.code}: {self.message}"

    def as_dict(self) -> dict[str, Any]:
        return {"status": self.status, "code": self.code, "message": self.message}


@dataclass
class Outcome:
    """One file: the image as the API last described it, or why there is none."""

    file: Path
    image: dict[str, Any] | None = None
    failure: ApiFailure | None = None
    failed_polls: int = field(default=0, repr=False)

    @property
    def status(self) -> str:
        if self.image is None:
            return "refused"
        return str(self.image.get("status", "unknown"))

    @property
    def ok(self) -> bool:
        return self.failure is None and self.status != "failed"

    def as_dict(self) -> dict[str, Any]:
        return {
            "file": str(self.file),
            "id": None if self.image is None else self.image.get("id"),
            "status": self.status,
            "image": self.image,
            "error": self.failure and self.failure.as_dict(),
        }


# -- the API ----------------------------------------------------------------------------------


class _CountingStream(httpx.SyncByteStream):
    """The request body, reporting each chunk once httpx has handed it to the socket."""

    def __init__(self, inner: Any, advance: Callable[[int], None]) -> None:
        self._inner = inner
        self._advance = advance

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._inner:
            yield chunk
            self._advance(len(chunk))


class ImagesApi:
    """The few calls the command makes, with every failure turned into ApiFailure (this
    file) or ApiFatal (all files: unreachable, or our key refused)."""

    def __init__(self, base_url: str, api_key: str | None) -> None:
        self.base_url = base_url
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.Client(base_url=base_url, headers=headers, timeout=HTTP_TIMEOUT)

    def close(self) -> None:
        self.http.close()

    def upload(
        self,
        path: Path,
        fields: dict[str, str],
        on_start: Callable[[int], None],
        on_sent: Callable[[int], None],
    ) -> dict[str, Any]:
        """POST the file as multipart field `file`, streamed from disk (never read whole);
        `on_start(total_bytes)`, then `on_sent(n)` as the body goes out."""
        with path.open("rb") as stream:
            request = self.http.build_request(
                "POST", UPLOAD_PATH, data=fields, files={"file": (path.name, stream)}
            )
            on_start(int(request.headers.get("content-length", "0")))
            request.stream = _CountingStream(request.stream, on_sent)
            return self._send(request, during="the upload")

    def get(self, image_id: str) -> dict[str, Any]:
        return self._send(self.http.build_request("GET", f"{UPLOAD_PATH}/{image_id}"))

    def _send(self, request: httpx.Request, during: str = "the request") -> dict[str, Any]:
        try:
            response = self.http.send(request)
        except httpx.ConnectError as exc:
            raise ApiUnreachable(
                f"cannot reach the taskmill API at {self.base_url} ({_reason(exc)}); start it "
                "with `taskmill up`, or point --url or TASKMILL_PUBLIC_URL at it"
            ) from None
        except httpx.TimeoutException:
            raise ApiFailure(None, "timeout", f"no answer from the API during {during}") from None
        except httpx.TransportError as exc:
            # An upload over the API's size limit may be cut off before its answer arrives.
            message = f"the connection broke during {during} ({_reason(exc)})"
            raise ApiFailure(None, "connection_error", message) from None
        if response.status_code == 401:
            raise ApiFatal(f"{_failure(response)}; pass --api-key or set TASKMILL_API_KEY")
        return _json_or_failure(response)


def _reason(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    return text.split("] ", 1)[-1]  # "[Errno 111] Connection refused" -> "Connection refused"


def _json_or_failure(response: httpx.Response) -> dict[str, Any]:
    body = _body(response)
    if response.is_success and isinstance(body, dict):
        return body
    raise _failure(response)


def _body(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _failure(response: httpx.Response) -> ApiFailure:
    """The API's `{"error": {"code", "message"}}`; for anything else (a proxy's HTML page),
    the status line."""
    body = _body(response)
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and "code" in error:
        return ApiFailure(response.status_code, str(error["code"]), str(error.get("message", "")))
    if response.is_success:
        return ApiFailure(response.status_code, "bad_response", "the answer is not a JSON object")
    phrase = response.reason_phrase or "error"
    return ApiFailure(response.status_code, phrase.lower().replace(" ", "_"), phrase)


# -- uploading and waiting --------------------------------------------------------------------


def _progress(*columns: Any) -> Progress:
    """Progress on stderr, so --json output stays clean; drawn only on a terminal, and
    removed when done, so what remains is the tables and the error lines."""
    return Progress(
        *columns, console=err_console, transient=True, disable=not err_console.is_terminal
    )


def upload_all(
    api: ImagesApi, files: list[Path], fields: dict[str, str], outcomes: list[Outcome]
) -> None:
    """Upload one file after the other, appending each outcome as it is known (so what was
    done is still there to report when the API goes away half-way)."""
    with _progress(
        TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn()
    ) as progress:
        for path in files:
            on_start, on_sent = _bar(progress, progress.add_task(path.name, total=None))
            outcome = Outcome(path)
            try:
                outcome.image = api.upload(path, fields, on_start, on_sent)
            except ApiFailure as failure:
                outcome.failure = failure
            outcomes.append(outcome)


def _bar(progress: Progress, task: TaskID) -> tuple[Callable[[int], None], Callable[[int], None]]:
    def start(total_bytes: int) -> None:
        progress.update(task, total=total_bytes)

    def sent(n_bytes: int) -> None:
        progress.advance(task, n_bytes)

    return start, sent


def wait_all(api: ImagesApi, outcomes: list[Outcome], timeout_s: float) -> None:
    """Poll every accepted image until it is completed or failed, or `timeout_s` passes."""
    waiting = [o for o in outcomes if o.image is not None and o.status not in FINAL]
    deadline = time.monotonic() + timeout_s
    pause_s = POLL_FIRST_S
    with _progress(
        SpinnerColumn(), TextColumn("{task.description}"), TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
    ) as progress:  # fmt: skip
        tasks = {id(o): progress.add_task(o.file.name, total=1, status=o.status) for o in waiting}
        while waiting and time.monotonic() < deadline:
            time.sleep(min(pause_s, max(0.0, deadline - time.monotonic())))
            pause_s = min(pause_s * 1.5, POLL_MAX_S)
            for outcome in waiting:
                _poll(api, outcome)
                done = outcome.failure is not None or outcome.status in FINAL
                progress.update(tasks[id(outcome)], status=outcome.status, completed=int(done))
            waiting = [o for o in waiting if o.failure is None and o.status not in FINAL]
    for outcome in waiting:
        outcome.failure = ApiFailure(
            None, "timeout", f"still {outcome.status} after {timeout_s:g}s (--timeout)"
        )


def _poll(api: ImagesApi, outcome: Outcome) -> None:
    assert outcome.image is not None
    try:
        outcome.image = api.get(str(outcome.image["id"]))
        outcome.failed_polls = 0
    except ApiUnreachable:
        outcome.failed_polls += 1  # the API may be restarting: keep the last state a while
        if outcome.failed_polls >= POLL_FAILURES_MAX:
            raise
    except ApiFailure as failure:
        if failure.status is not None:  # e.g. 404: deleted meanwhile; no point asking again
            outcome.failure = failure


# -- output -----------------------------------------------------------------------------------


def uploads_table(outcomes: list[Outcome]) -> Table:
    table = Table(title="images", title_justify="left")
    for column in ("file", "image id", "status"):
        table.add_column(column)
    for o in outcomes:
        table.add_row(str(o.file), "-" if o.image is None else str(o.image.get("id")), o.status)
    return table


def renditions_table(outcomes: list[Outcome]) -> Table:
    table = Table(title="renditions", title_justify="left")
    for column in ("file", "rendition", "size", "bytes", "format"):
        table.add_column(column, justify="right" if column == "bytes" else "left")
    table.add_column("url", overflow="fold")  # folded, never cut with an ellipsis
    for o in outcomes:
        if o.image is None or o.status != "completed":
            continue
        for name, r in _ordered(o.image.get("renditions") or {}):
            table.add_row(
                str(o.file), name, f"{r.get('width')}x{r.get('height')}",
                decimal(int(r.get("bytes") or 0)), str(r.get("format")),
                Text(str(r.get("url")), style=f"link {r.get('url')}"),
            )  # fmt: skip
    return table


def print_wide(table: Table) -> None:
    """On a terminal, the table fits the window (URLs folded, but links still whole);
    into a file or a pipe, as wide as it needs, so every URL stays on one line."""
    if console.is_terminal:
        console.print(table)
        return
    wide = console.options.update_width(UNBOUNDED_WIDTH)
    natural = console.measure(table, options=wide).maximum
    Console(file=console.file, width=max(console.width, natural)).print(table)


def _ordered(renditions: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    known = [(n, renditions[n]) for n in RENDITION_ORDER if n in renditions]
    return known + sorted((n, r) for n, r in renditions.items() if n not in RENDITION_ORDER)


def error_line(outcome: Outcome) -> str | None:
    """The one line that says why this file did not make it, or None when it did."""
    if outcome.failure is not None:
        return f"{outcome.file}: {outcome.failure}"
    if outcome.image is not None and outcome.status == "failed":
        error = outcome.image.get("error") or "no reason given"
        return f"{outcome.file}: image {outcome.image.get('id')} failed: {error}"
    return None


def report(outcomes: list[Outcome], *, waited: bool, as_json: bool) -> None:
    if as_json:
        print_json([o.as_dict() for o in outcomes])
    else:
        console.print(uploads_table(outcomes))
        if waited and any(o.status == "completed" for o in outcomes):
            print_wide(renditions_table(outcomes))
    for outcome in outcomes:
        line = error_line(outcome)
        if line:
            click.echo(f"Error: {line}", err=True)


# -- the command ------------------------------------------------------------------------------


def _check_url(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is not None and not value.startswith(("http://", "https://")):
        raise click.BadParameter(f"{value!r} must start with http:// or https://")
    return value.rstrip("/") if value else value


def _check_renditions(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not valid JSON: {exc}") from None
    if not isinstance(parsed, dict):
        raise click.BadParameter('must be a JSON object, e.g. \'{"resized": {"width": 800}}\'')
    return value


def _defaults(url: str | None, api_key: str | None) -> tuple[str, str | None]:
    """The API's URL and key: flags and TASKMILL_PUBLIC_URL / TASKMILL_API_KEY first; on the
    server's own machine, its settings (the first of TASKMILL_API_KEYS) do."""
    if url and api_key:
        return url, api_key
    try:
        settings = Settings.from_env()
    except TaskmillError as exc:
        raise click.ClickException(str(exc)) from None
    return url or settings.public_url, api_key or next(iter(settings.api_keys), None)


@click.command()
@click.argument(
    "files", nargs=-1, required=True, metavar="FILE...",
    type=click.Path(exists=True, dir_okay=False, readable=True, path_type=Path),
)  # fmt: skip
@click.option(
    "--url", callback=_check_url, envvar="TASKMILL_PUBLIC_URL", metavar="URL",
    help="The API's base URL (env TASKMILL_PUBLIC_URL; default http://127.0.0.1:8000).",
)  # fmt: skip
@click.option(
    "--api-key", envvar="TASKMILL_API_KEY", metavar="KEY",
    help="Bearer token (env TASKMILL_API_KEY; default the first of TASKMILL_API_KEYS).",
)  # fmt: skip
@click.option("--webhook-url", metavar="URL", help="POSTed each image's JSON when it is done.")
@click.option(
    "--renditions", callback=_check_renditions, metavar="JSON",
    help='Rendition overrides, e.g. \'{"resized": {"width": 800, "format": "webp"}}\'.',
)  # fmt: skip
@click.option("--wait", is_flag=True, help="Wait until each image is done; print renditions.")
@click.option(
    "--timeout", "timeout_s", type=click.FloatRange(min=0), default=DEFAULT_WAIT_S,
    show_default=True, metavar="SECONDS", help="With --wait: give up after this long.",
)  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print JSON, for scripts.")
def image(
    files: tuple[Path, ...], url: str | None, api_key: str | None, webhook_url: str | None,
    renditions: str | None, wait: bool, timeout_s: float, as_json: bool,
) -> None:  # fmt: skip
    """Upload image FILEs through the HTTP API; with --wait, print their renditions.

    Exit status: 0 when every file was accepted (with --wait: completed), 1 when any was
    refused or failed, 2 for bad usage."""
    base_url, key = _defaults(url, api_key)
    fields = {k: v for k, v in (("webhook_url", webhook_url), ("renditions", renditions)) if v}
    api = ImagesApi(base_url, key)
    outcomes: list[Outcome] = []
    try:
        upload_all(api, list(files), fields, outcomes)
        if wait:
            wait_all(api, outcomes, timeout_s)
    except ApiFatal:
        if any(o.image is not None for o in outcomes):  # what was accepted, with its ids
            report(outcomes, waited=False, as_json=as_json)
        raise
    finally:
        api.close()
    report(outcomes, waited=wait, as_json=as_json)
    if not all(o.ok for o in outcomes):
        raise SystemExit(1)
