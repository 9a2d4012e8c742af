"""A real S3 server for the tests: a throwaway Ceph RADOS Gateway on loopback.

Why Ceph and not a mock: RGW checks SigV4 signatures, presigned-URL expiry and anonymous
access the way S3 does (moto accepts tampered and expired presigned URLs, so it proves
nothing about signing). One node: a monitor, one OSD on memstore (objects live in RAM) and
the gateway, on free 127.0.0.1 ports, with config and logs in a fresh temporary directory.

The daemons run in the foreground as children of the test process, so stopping kills
exactly them; on Linux they also die with it (setpriv --pdeathsig) when a test run is
killed, and the next run deletes the directories such a run left. Starting takes about
1-2 s here, so a test run starts one (fixture `s3_server`) and each test gets a bucket
of its own (`s3_bucket`). Debian/Ubuntu packages: radosgw ceph-mon ceph-osd
(scripts/install-test-system-packages.sh installs them).

When no gateway can be started, S3 tests are skipped with the reason, or fail under
CI=true, where a skipped S3 suite would hide a broken setup.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import itertools
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from botocore.config import Config

from tests.helpers import unavailable
from tests.pg import free_port, pid_alive

ACCESS_KEY = "test"
SECRET_KEY = "testsecret"
REGION = "us-east-1"
PROGRAMS = (
    "ceph-authtool", "monmaptool", "ceph-mon", "ceph", "ceph-osd", "radosgw", "radosgw-admin",
)  # fmt: skip
START_TIMEOUT_S = 90.0
COMMAND_TIMEOUT_S = 20.0
DAEMON_ATTEMPTS = 3
POLL_S = 0.1

# One OSD holds every copy (size 1). The gateway creates six pools (four at start, two at
# the first bucket and object), and the monitor batches changes for 1 s by default, which
# costs ~2 s per pool: 11 s to start and 5 s more for the first object. A 50 ms batch
# brings the whole start down to about 1 s.
CEPH_CONF = """\
[global]
fsid = {fsid}
mon host = v1:127.0.0.1:{mon_port}
mon initial members = a
public addr = 127.0.0.1
ms bind msgr2 = false
auth cluster required = none
auth service required = none
auth client required = none
auth supported = none
osd pool default size = 1
osd pool default min size = 1
osd pool default pg autoscale mode = off
osd pool default pg num = 8
osd pool default pgp num = 8
mon allow pool size one = true
mon warn on pool no redundancy = false
osd crush chooseleaf type = 0
run dir = {dir}/run
log file = {dir}/log/$name.log
admin socket = {dir}/run/$name.asok
keyring = {dir}/keyring
[mon]
mon data = {dir}/mon.$id
mon allow pool delete = true
paxos propose interval = 0.05
paxos min wait = 0.01
[osd]
osd data = {dir}/osd.$id
osd objectstore = memstore
osd class update on start = false
memstore device bytes = 1073741824
osd max object name len = 460
osd max object namespace len = 64
[client.rgw]
rgw data = {dir}/rgw
rgw dns name = localhost
rgw thread pool size = 64
"""
DIR_PREFIX = "taskmill-rgw."
OWNER_FILE = "owner.pid"


class RgwUnavailable(RuntimeError):
    """No gateway could be started; the message says what is missing or what failed."""


@dataclass(frozen=True)
class S3Endpoint:
    """Where the gateway answers, and the credentials of its one user."""

    url: str
    access_key: str = ACCESS_KEY
    secret_key: str = SECRET_KEY
    region: str = REGION

    def env(self) -> dict[str, str]:
        """AWS variables that make boto3's default credential chain find this user (and
        nothing from the machine's own ~/.aws files)."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        }

    def storage_url(self, bucket: str) -> str:
        """TASKMILL_STORAGE_URL for `bucket` on this gateway."""
        return f"s3://{bucket}?endpoint_url={self.url}&region={self.region}"

    def client(self) -> Any:
        """A boto3 S3 client with explicit credentials, for setting up and checking what the
        code under test did (one per endpoint: clients are thread-safe and slow to make)."""
        return _client_for(self)


@functools.cache
def _client_for(endpoint: S3Endpoint) -> Any:
    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint.url,
        region_name=endpoint.region,
        aws_access_key_id=endpoint.access_key,
        aws_secret_access_key=endpoint.secret_key,
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
    )


class RgwCluster:
    """A one-node Ceph cluster with a gateway, owned by whoever created it.

    `start()` returns the endpoint; `stop()` kills its daemons and deletes its directory
    (also registered at interpreter exit). Raises RgwUnavailable, with the end of the
    relevant log, when the programs are missing or a daemon does not come up."""

    def __init__(self, *, timeout_s: float = START_TIMEOUT_S) -> None:
        self.timeout_s = timeout_s
        self.dir: Path | None = None
        self.daemons: dict[str, subprocess.Popen[bytes]] = {}
        self.endpoint: S3Endpoint | None = None
        self._deadline = 0.0
        atexit.register(self.stop)

    @property
    def conf(self) -> Path:
        if self.dir is None:
            raise RgwUnavailable("the cluster was never started")
        return self.dir / "ceph.conf"

    def start(self) -> S3Endpoint:
        missing = [p for p in PROGRAMS if shutil.which(p) is None]
        if missing:
            raise RgwUnavailable(
                f"not installed: {', '.join(missing)} (Debian/Ubuntu packages radosgw ceph-mon"
                " ceph-osd; scripts/install-test-system-packages.sh installs them)"
            )
        remove_orphans()
        self._deadline = time.monotonic() + self.timeout_s
        self.dir = Path(tempfile.mkdtemp(prefix=DIR_PREFIX))
        (self.dir / OWNER_FILE).write_text(str(os.getpid()))
        try:
            self._start_monitor()
            self._start_osd()
            self._create_user()
            url = self._start_gateway()
        except BaseException:
            self.stop()
            raise
        self.endpoint = S3Endpoint(url)
        return self.endpoint

    def stop(self) -> None:
        """Kill this cluster's daemons (nothing else) and delete its files. Idempotent."""
        for name in ("rgw", "osd", "mon"):
            proc = self.daemons.pop(name, None)
            if proc is not None and proc.poll() is None:
                proc.kill()  # everything is thrown away: nothing to shut down cleanly
            if proc is not None:
                proc.wait()
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None
        self.endpoint = None
        atexit.unregister(self.stop)

    # -- steps ------------------------------------------------------------------------------

    def _start_monitor(self) -> None:
        assert self.dir is not None
        for sub in ("mon.a", "osd.0", "run", "log", "rgw"):
            (self.dir / sub).mkdir()
        fsid = str(uuid.uuid4())
        mon_port = free_port()
        self.conf.write_text(CEPH_CONF.format(fsid=fsid, mon_port=mon_port, dir=self.dir))
        keyring, monmap = str(self.dir / "keyring"), str(self.dir / "monmap")
        self._run("ceph-authtool", "--create-keyring", keyring, "--gen-key", "-n", "mon.",
                  "--cap", "mon", "allow *")  # fmt: skip
        self._run("monmaptool", "--create", "--fsid", fsid, "--addv", "a",
                  f"[v1:127.0.0.1:{mon_port}]", monmap)  # fmt: skip
        self._run("ceph-mon", "-c", str(self.conf), "--mkfs", "-i", "a", "--monmap", monmap,
                  "--keyring", keyring)  # fmt: skip
        self._spawn("mon", "ceph-mon", "-f", "-c", str(self.conf), "-i", "a")

    def _start_osd(self) -> None:
        osd_uuid = str(uuid.uuid4())
        # The monitor refuses commands for a moment after it starts (EPERM, "wrong fsid"):
        # every cluster command is retried until the deadline.
        self._run_until_ok(
            "adding the OSD", "ceph", *self._ceph_args(), "osd", "new", osd_uuid, "0"
        )
        self._run("ceph-osd", "-c", str(self.conf), "-i", "0", "--mkfs", "--osd-uuid", osd_uuid)

        def spawn() -> Callable[[], bool]:
            self._spawn("osd", "ceph-osd", "-f", "-c", str(self.conf), "-i", "0")
            return self._osd_up

        self._start_until_ready("osd", "the OSD to be up", spawn)

    def _osd_up(self) -> bool:
        done = self._run_quietly("ceph", *self._ceph_args(), "osd", "stat")
        return done.returncode == 0 and b" 1 up" in done.stdout

    def _create_user(self) -> None:
        """The S3 user, made before any gateway runs: radosgw-admin notifies every running
        gateway of the change, and would wait ~30 s on one that was killed (a retried
        start) before the cluster noticed it gone."""
        admin = ("radosgw-admin", "-c", str(self.conf), "--uid=test")
        create = ("user", "create", "--display-name=test", f"--access-key={ACCESS_KEY}",
                  f"--secret-key={SECRET_KEY}")  # fmt: skip
        while self._run_quietly(*admin, *create).returncode != 0:
            if self._run_quietly(*admin, "user", "info").returncode == 0:
                return  # an attempt that failed on the way out had made it
            if time.monotonic() >= self._deadline:
                self._run(*admin, *create)  # raises, with radosgw-admin's own words
            time.sleep(POLL_S)

    def _start_gateway(self) -> str:
        url = ""

        def spawn() -> Callable[[], bool]:
            nonlocal url
            port = free_port()  # a new one each attempt: another program may take it first
            url = f"http://127.0.0.1:{port}"
            self._spawn("rgw", "radosgw", "-f", "-c", str(self.conf), "-n", "client.rgw",
                        f"--rgw-frontends=beast endpoint=127.0.0.1:{port}")  # fmt: skip
            return functools.partial(_answers, url)

        self._start_until_ready("rgw", "the gateway to answer HTTP", spawn)
        return url

    def _start_until_ready(
        self, daemon: str, what: str, spawn: Callable[[], Callable[[], bool]]
    ) -> None:
        """Start a daemon and wait until `ready`; start it again when it exits at once, as
        the loser of a race may (the OSD with a monitor that just started, the gateway
        for its port)."""
        for attempt in range(1, DAEMON_ATTEMPTS + 1):
            ready = spawn()
            try:
                self._wait(what, daemon, ready)
                return
            except RgwUnavailable:
                if attempt == DAEMON_ATTEMPTS or self.daemons[daemon].poll() is None:
                    raise
                self.daemons.pop(daemon).wait()
                time.sleep(POLL_S)

    # -- helpers ----------------------------------------------------------------------------

    def _ceph_args(self) -> tuple[str, ...]:
        return ("-c", str(self.conf), "--connect-timeout", "5")

    def _spawn(self, name: str, *argv: str) -> None:
        assert self.dir is not None
        # setpriv (util-linux) asks the kernel to kill the daemon when the test process
        # dies, so a killed test run leaves no daemons behind.
        setpriv = shutil.which("setpriv")
        prefix = (setpriv, "--pdeathsig", "KILL", "--") if setpriv else ()
        with (self.dir / "log" / f"{name}.out").open("ab") as out:
            self.daemons[name] = subprocess.Popen(
                (*prefix, *argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C in the terminal is for pytest alone
                env=self._env(),
            )

    def _env(self) -> dict[str, str]:
        return {**os.environ, "CEPH_CONF": str(self.conf)}

    def _run_quietly(self, *argv: str) -> subprocess.CompletedProcess[bytes]:
        try:
            return subprocess.run(
                argv, capture_output=True, stdin=subprocess.DEVNULL, env=self._env(),
                timeout=COMMAND_TIMEOUT_S, check=False,
            )  # fmt: skip
        except subprocess.TimeoutExpired as exc:
            return subprocess.CompletedProcess(argv, -1, b"", f"timed out: {exc}".encode())

    def _run(self, *argv: str) -> None:
        done = self._run_quietly(*argv)
        if done.returncode != 0:
            raise RgwUnavailable(f"{argv[0]} failed: {_last_line(done)}")

    def _run_until_ok(self, doing: str, *argv: str) -> None:
        while True:
            done = self._run_quietly(*argv)
            if done.returncode == 0:
                return
            if time.monotonic() >= self._deadline:
                raise RgwUnavailable(f"{doing}: {argv[0]} failed: {_last_line(done)}")
            time.sleep(POLL_S)

    def _wait(self, what: str, daemon: str, ready: Callable[[], bool]) -> None:
        while not ready():
            proc = self.daemons[daemon]
            if proc.poll() is not None:
                raise RgwUnavailable(
                    f"waiting for {what}: the {daemon} daemon exited with {proc.returncode}"
                    f"{self._log_tail(daemon)}"
                )
            if time.monotonic() >= self._deadline:
                raise RgwUnavailable(
                    f"waiting for {what}: not ready after {self.timeout_s:.0f}s"
                    f"{self._log_tail(daemon)}"
                )
            time.sleep(POLL_S)

    def _log_tail(self, daemon: str, lines: int = 5) -> str:
        assert self.dir is not None
        names = {"mon": "mon.a", "osd": "osd.0", "rgw": "client.rgw"}
        texts = []
        for path in (self.dir / "log" / f"{daemon}.out", self.dir / "log" / f"{names[daemon]}.log"):
            with contextlib.suppress(OSError):
                texts += path.read_text(errors="replace").splitlines()[-lines:]
        return ("\n" + "\n".join(texts)) if texts else ""


def remove_orphans() -> None:
    """Delete the directories of clusters whose test process is gone (killed runs)."""
    for path in Path(tempfile.gettempdir()).glob(f"{DIR_PREFIX}*"):
        with contextlib.suppress(OSError, ValueError):
            owner = int((path / OWNER_FILE).read_text())
            if not pid_alive(owner):
                shutil.rmtree(path, ignore_errors=True)


def _answers(url: str) -> bool:
    try:
        httpx.get(url, timeout=2)
    except httpx.HTTPError:
        return False
    return True


def _last_line(done: subprocess.CompletedProcess[bytes]) -> str:
    text = (done.stderr or done.stdout).decode(errors="replace").strip()
    return text.splitlines()[-1] if text else f"exit status {done.returncode}"


# -- fixtures (a conftest.py imports them: `from tests.s3 import s3_server as s3_server`)

S3_USED = pytest.StashKey[str]()
_buckets = itertools.count(1)


@pytest.fixture(scope="session")
def s3_server(pytestconfig: pytest.Config) -> Iterator[S3Endpoint]:
    """The S3 server of this test run: a Ceph RGW, started once and stopped at the end."""
    cluster = RgwCluster()
    started = time.monotonic()
    try:
        endpoint = cluster.start()
    except RgwUnavailable as exc:
        pytestconfig.stash[S3_USED] = f"none ({exc})"
        unavailable("an S3 server (Ceph RGW)", str(exc))
    took_s = time.monotonic() - started
    pytestconfig.stash[S3_USED] = f"Ceph RGW at {endpoint.url}, started in {took_s:.1f}s"
    yield endpoint
    cluster.stop()


@pytest.fixture
def s3_env(s3_server: S3Endpoint, monkeypatch: pytest.MonkeyPatch) -> S3Endpoint:
    """The server's credentials in the AWS variables, for code that finds its own."""
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    return s3_server


@pytest.fixture
def s3_bucket(s3_server: S3Endpoint) -> Iterator[str]:
    """A new, empty bucket for this test; emptied and deleted after it."""
    client = s3_server.client()
    name = f"taskmill-test-{os.getpid()}-{next(_buckets)}"
    client.create_bucket(Bucket=name)
    yield name
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=name):
        keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        if keys:
            client.delete_objects(Bucket=name, Delete={"Objects": keys, "Quiet": True})
    client.delete_bucket(Bucket=name)
