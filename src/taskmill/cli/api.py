"""`taskmill api`: the HTTP API alone (stateless: run several behind a load balancer on
PostgreSQL). Also how `taskmill up` runs its API process, on a socket it bound itself."""

from __future__ import annotations

import ipaddress
import signal
import socket
from typing import Any

import click

from taskmill.app import Taskmill
from taskmill.cli.base import app_option, database_option, open_app, setup_logging
from taskmill.cli.output import console
from taskmill.errors import ConfigError
from taskmill.images.service import image_service

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
GRACEFUL_SHUTDOWN_S = 10  # open requests and WebSockets get this long after SIGTERM
BACKLOG = 2048  # connections the kernel queues while the server starts or is busy


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def check_exposure(host: str, api_keys: tuple[str, ...], *, insecure: bool) -> None:
    """Refuse (ConfigError) to listen beyond loopback without API keys, unless `insecure`."""
    if api_keys or insecure or is_loopback(host):
        return
    raise ConfigError(
        f"refusing to listen on {host} without API keys: anyone who can reach it could run "
        "tasks. Set TASKMILL_API_KEYS, listen on 127.0.0.1, or pass --insecure"
    )


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket (port 0 takes a free one). Raises ConfigError when the
    address is taken or not ours."""
    try:
        info = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _, address = info[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {exc}") from None
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(BACKLOG)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.set_inheritable(True)  # `taskmill up` hands it to its API process
    return sock


def base_url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


def serve(app: Taskmill, sock: socket.socket, *, access_log: bool = False) -> None:
    """Serve the API on `sock` until SIGTERM or SIGINT, then finish open requests (up to
    GRACEFUL_SHUTDOWN_S) and return."""
    import uvicorn

    from taskmill.api import create_app

    config = uvicorn.Config(
        create_app(app),
        log_config=None,  # our logging setup: one format for every taskmill process
        access_log=access_log,
        server_header=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        lifespan="on",
        backlog=BACKLOG,
    )
    # uvicorn re-raises the signal that stopped it once it is done, under the handlers it
    # found: make those no-ops, so a stop by signal is a clean exit, not a KeyboardInterrupt.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _ignore)
    uvicorn.Server(config).run(sockets=[sock])


def _ignore(_signum: int, _frame: Any) -> None:
    pass


def print_banner(url: str, app: Taskmill, *, components: str) -> None:
    console.print(f"[bold]taskmill {components}[/]")
    images = image_service(app).enabled
    routes = [("API", "/api/tasks"), ("images", "/api/images"), ("docs", "/docs"),
              ("dashboard", "/"), ("metrics", "/metrics")]  # fmt: skip
    for label, path in routes:
        if images or label != "images":
            console.print(f"  {label:<10} {url}{path}", highlight=False)
    console.print(f"  {'database':<10} {app.settings.database_url}", highlight=False)
    if images:
        console.print(f"  {'storage':<10} {app.settings.storage_url}", highlight=False)
    host = url.removeprefix("http://").rsplit(":", 1)[0].strip("[]")
    if app.settings.api_keys:
        console.print(f"API keys required ({len(app.settings.api_keys)} configured).")
    elif is_loopback(host):
        console.print(f"No API keys (TASKMILL_API_KEYS): listening on {host} only.")
    else:
        console.print(
            f"[bold red]No API keys and --insecure: anyone who reaches {host} may use it."
        )


@click.command()
@click.option("--host", default=DEFAULT_HOST, show_default=True, help="Address to listen on.")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=DEFAULT_PORT, show_default=True,
    help="Port (0: any free one).",
)  # fmt: skip
@click.option("--insecure", is_flag=True, help="Allow listening beyond loopback without API keys.")
@click.option("--access-log", is_flag=True, help="Log every request.")
@click.option("--fd", type=int, default=None, hidden=True)  # a socket from `taskmill up`
@app_option
@database_option
def api(
    host: str, port: int, insecure: bool, access_log: bool, fd: int | None,
    app_ref: str | None, database_url: str | None,
) -> None:  # fmt: skip
    """Serve the HTTP API (and dashboard) until SIGTERM or Ctrl-C."""
    setup_logging()
    app = open_app(app_ref, database_url)
    check_exposure(host, app.settings.api_keys, insecure=insecure)
    if fd is None:
        sock = bind(host, port)
        print_banner(base_url(sock), app, components="api")
    else:
        sock = socket.socket(fileno=fd)
    serve(app, sock, access_log=access_log)
