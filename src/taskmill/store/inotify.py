"""Linux inotify through libc's two calls (no dependency): a descriptor that becomes
readable when chosen files of one directory are written, created or moved in.

Watching the directory rather than the files sees a file that does not exist yet or is
deleted and recreated (SQLite's -wal and -journal). Anything that prevents a watch (not
Linux, a libc without inotify, the per-user limits) raises OSError; callers fall back to
polling."""

from __future__ import annotations

import ctypes
import errno
import os
import struct
import sys
from collections.abc import Iterable
from functools import cache

IN_MODIFY = 0x002
IN_CLOSE_WRITE = 0x008
IN_MOVED_TO = 0x080
IN_CREATE = 0x100
IN_Q_OVERFLOW = 0x4000  # the kernel's queue overflowed: events were lost
IN_IGNORED = 0x8000  # the watch is gone (the directory was deleted or unmounted)
IN_ONLYDIR = 0x01000000
WRITES = IN_MODIFY | IN_CREATE | IN_MOVED_TO | IN_CLOSE_WRITE

_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len; then len bytes of NUL-padded name
_READ_SIZE = 64 * 1024  # many events per read; at least one event with the longest name


@cache
def _libc() -> ctypes.CDLL:
    if sys.platform != "linux":
        raise OSError(errno.ENOSYS, f"inotify is Linux-only, not {sys.platform}")
    libc = ctypes.CDLL(None, use_errno=True)
    if not hasattr(libc, "inotify_init1"):
        raise OSError(errno.ENOSYS, "this libc has no inotify_init1")
    libc.inotify_init1.argtypes = [ctypes.c_int]
    libc.inotify_init1.restype = ctypes.c_int
    libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
    libc.inotify_add_watch.restype = ctypes.c_int
    return libc


def _failed(call: str) -> OSError:
    code = ctypes.get_errno()
    return OSError(code, f"{call}: {os.strerror(code)}")


def inotify_init() -> int:
    """A new inotify descriptor, non-blocking and closed on exec."""
    fd: int = _libc().inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
    if fd < 0:
        raise _failed("inotify_init1")  # EMFILE: the per-user instance limit
    return fd


def add_watch(fd: int, path: str, mask: int) -> int:
    wd: int = _libc().inotify_add_watch(fd, os.fsencode(path), mask)
    if wd < 0:
        raise _failed(f"inotify_add_watch {path}")  # ENOSPC: the per-user watch limit
    return wd


class DirectoryWatch:
    """Writes to the files `names` of `directory`. Raises OSError when it cannot watch."""

    def __init__(self, directory: str, names: Iterable[str], mask: int = WRITES) -> None:
        self._names = frozenset(os.fsencode(n) for n in names)
        self._fd = inotify_init()
        try:
            add_watch(self._fd, directory, mask | IN_ONLYDIR)
        except OSError:
            os.close(self._fd)
            raise

    def fileno(self) -> int:
        return self._fd

    def drain(self) -> bool:
        """Consume every pending event without blocking; True when one concerned a watched
        name or events were lost. OSError once the watch is gone."""
        touched = False
        while True:
            try:
                data = os.read(self._fd, _READ_SIZE)
            except BlockingIOError:
                return touched
            offset = 0
            while offset < len(data):
                _, mask, _, length = _EVENT.unpack_from(data, offset)
                start = offset + _EVENT.size
                name = data[start : start + length].split(b"\0", 1)[0]
                offset = start + length
                if mask & IN_IGNORED:
                    raise OSError(errno.ENOENT, "the watched directory is gone")
                touched = touched or bool(mask & IN_Q_OVERFLOW) or name in self._names

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
