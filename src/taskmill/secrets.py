"""The secret that signs local media URLs and webhooks.

TASKMILL_SECRET_KEY when set; otherwise a key generated on first use and kept in the data
dir, so URLs signed before a restart stay valid and every process on the machine (API,
workers, scheduler) signs with the same key.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

from taskmill.config import Settings
from taskmill.errors import ConfigError

SECRET_FILE_NAME = "secret.key"


def load_secret(settings: Settings) -> bytes:
    """`settings.secret_key` if set, else the key in `<data_dir>/secret.key`, created on
    first use (mode 0600). Processes starting at the same moment all end up with the one
    key that won the race. Raises ConfigError when the file cannot be read or created."""
    if settings.secret_key:
        return settings.secret_key.encode()
    path = settings.data_dir / SECRET_FILE_NAME
    try:
        return _read(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise _unusable(path, exc) from exc
    try:
        _create_once(path, secrets.token_urlsafe(32))
        return _read(path)
    except OSError as exc:
        raise _unusable(path, exc) from exc


def _read(path: Path) -> bytes:
    key = path.read_bytes().strip()
    if not key:
        raise ConfigError(f"secret key file {path} is empty: delete it or fill it")
    return key


def _create_once(path: Path, key: str) -> None:
    """Write `key` to `path` unless it exists. The key is written in full to a private
    temporary file first and then hard-linked into place: linking fails if another process
    got there first, so nobody ever reads a half-written key or overwrites one in use."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as out:
            out.write(key + "\n")
            out.flush()
            os.fsync(out.fileno())
        with contextlib.suppress(FileExistsError):  # lost the race: the winner's key stands
            os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _unusable(path: Path, exc: OSError) -> ConfigError:
    return ConfigError(
        f"secret key file {path}: {exc.strerror or exc} (set TASKMILL_SECRET_KEY instead)"
    )
