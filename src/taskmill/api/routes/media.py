"""/media/{key}: files of a local storage folder, to whoever holds a signed, unexpired URL.

The key is checked against the one shape keys have before anything else happens, so no
request can name a file outside the storage folder; then the signature and expiry; only
then is the file opened. Mounted only when storage is a local folder (S3 serves its own
presigned URLs).
"""

from __future__ import annotations

import math
import os
import stat
import time
from collections.abc import Mapping
from pathlib import Path
from typing import BinaryIO

import anyio.to_thread
from fastapi import APIRouter
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from taskmill.api.errors import ApiError
from taskmill.images.storage import FileStorage, content_type_of, validate_key

CHUNK_BYTES = 256 * 1024
NOT_FOUND = "no such media object"


def router(storage: FileStorage) -> APIRouter:
    api = APIRouter(include_in_schema=False)

    @api.api_route("/media/{key:path}", methods=["GET", "HEAD"])
    async def media(key: str, expires: str = "", signature: str = "") -> Response:
        """The object's bytes with its content type, cacheable privately until the URL
        expires. 404 for anything that is not a key or not stored; 403 (saying why) for
        a missing, wrong or expired signature."""
        try:
            validate_key(key)
        except ValueError:
            raise ApiError(404, "not_found", NOT_FOUND) from None
        reason = storage.refusal(key, expires, signature)
        if reason is not None:
            raise ApiError(403, "forbidden", f"media URL refused: {reason}")
        try:
            file, size = await anyio.to_thread.run_sync(_open_regular, storage.local_path(key))
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise ApiError(404, "not_found", NOT_FOUND) from None
        max_age_s = max(0, math.floor(int(expires) - time.time()))
        headers = {
            "cache-control": f"private, max-age={max_age_s}",
            "x-content-type-options": "nosniff",  # never let a browser run a file as HTML
        }
        return OpenFileResponse(file, size, media_type=content_type_of(key), headers=headers)

    return api


def _open_regular(path: Path) -> tuple[BinaryIO, int]:
    file = path.open("rb")
    try:
        st = os.fstat(file.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise IsADirectoryError(path)
    except BaseException:
        file.close()
        raise
    return file, st.st_size


class OpenFileResponse(Response):
    """Streams a file that was opened before the response started.

    Starlette's FileResponse stats the path, sends the headers, then opens the path again:
    an object replaced (a re-run writes it anew) or deleted (cleanup) in between would go
    out with a wrong Content-Length or fail after the headers. An open file keeps the
    version whose size was announced."""

    def __init__(
        self, file: BinaryIO, size: int, *, media_type: str, headers: Mapping[str, str]
    ) -> None:
        self.file = file
        self.size = size
        self.status_code = 200
        self.media_type = media_type
        self.background = None
        self.init_headers({**headers, "content-length": str(size)})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            left = 0 if scope.get("method") == "HEAD" else self.size
            more = True
            while more:
                chunk = (
                    await anyio.to_thread.run_sync(self.file.read, min(CHUNK_BYTES, left))
                    if left
                    else b""
                )
                left -= len(chunk)
                more = bool(chunk) and left > 0
                await send({"type": "http.response.body", "body": chunk, "more_body": more})
        finally:
            self.file.close()
