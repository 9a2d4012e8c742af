"""Receiving a multipart upload straight to a temporary file.

The body is parsed as it streams in: the file part goes to disk chunk by chunk (never whole
in memory), and an upload over the limit is refused the moment it crosses it, without
reading the rest."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from taskmill.api.errors import ApiError
from taskmill.images.errors import UploadTooLarge

MAX_FIELD_BYTES = 64 * 1024  # a text field (webhook_url, renditions JSON)
MAX_PARTS = 8
# What a request may carry beyond the file itself: part headers and the text fields.
MULTIPART_OVERHEAD_BYTES = MAX_PARTS * MAX_FIELD_BYTES


@dataclass
class Upload:
    """What a multipart request carried: the file (on disk) and the text fields."""

    path: Path | None = None
    size: int = 0
    fields: dict[str, str] = field(default_factory=dict)

    def discard(self) -> None:
        if self.path is not None:
            self.path.unlink(missing_ok=True)


class _Receiver:
    """Callbacks of python-multipart's streaming parser: one part at a time."""

    def __init__(
        self, upload: Upload, *, file_field: str, max_file_bytes: int, directory: Path
    ) -> None:
        self.upload = upload
        self.directory = directory
        self.file_field = file_field
        self.max_file_bytes = max_file_bytes
        self.parts = 0
        self._header_name = b""
        self._header_value = b""
        self._disposition = b""
        self._name: str | None = None
        self._text = bytearray()
        self._file: IO[bytes] | None = None

    def on_part_begin(self) -> None:
        self.parts += 1
        if self.parts > MAX_PARTS:
            raise ApiError(422, "validation_error", f"at most {MAX_PARTS} form fields")
        self._disposition = b""
        self._name = None
        self._text.clear()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        if self._header_name.lower() == b"content-disposition":
            self._disposition = self._header_value
        self._header_name = self._header_value = b""

    def on_headers_finished(self) -> None:
        _, params = parse_options_header(self._disposition)
        name = params.get(b"name")
        if name is None:
            raise ApiError(422, "validation_error", "a form part has no name")
        self._name = name.decode("utf-8", "replace")
        if self._name == self.file_field:
            if self.upload.path is not None:
                raise ApiError(422, "validation_error", f"send one {self.file_field!r} per request")
            fd, path = tempfile.mkstemp(prefix="upload-", dir=self.directory)
            self.upload.path = Path(path)
            self._file = os.fdopen(fd, "wb")

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._file is not None:
            self.upload.size += end - start
            if self.upload.size > self.max_file_bytes:
                raise UploadTooLarge(f"the file is larger than {self.max_file_bytes} bytes")
            self._file.write(data[start:end])
        else:
            self._text += data[start:end]
            if len(self._text) > MAX_FIELD_BYTES:
                raise ApiError(
                    422, "validation_error", f"field {self._name!r} is over {MAX_FIELD_BYTES} bytes"
                )

    def on_part_end(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        elif self._name is not None:
            try:
                self.upload.fields[self._name] = self._text.decode("utf-8")
            except UnicodeDecodeError:
                raise ApiError(
                    422, "validation_error", f"field {self._name!r} is not UTF-8 text"
                ) from None

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


async def receive_upload(
    request: Request, *, file_field: str, max_file_bytes: int, directory: Path
) -> Upload:
    """Parse a multipart/form-data body, the file into `directory` (on disk: /tmp may be
    RAM); the caller owns (and discards) the file. Raises ApiError/UploadTooLarge with the
    client's mistake, having deleted any partial file."""
    content_type, params = parse_options_header(request.headers.get("content-type", ""))
    boundary = params.get(b"boundary")
    if content_type != b"multipart/form-data" or not boundary:
        raise ApiError(
            415, "unsupported_media_type",
            f"send multipart/form-data with the image in a field named {file_field!r}",
        )  # fmt: skip
    upload = Upload()
    directory.mkdir(parents=True, exist_ok=True)
    receiver = _Receiver(
        upload, file_field=file_field, max_file_bytes=max_file_bytes, directory=directory
    )
    callbacks = {
        "on_part_begin": receiver.on_part_begin,
        "on_header_field": receiver.on_header_field,
        "on_header_value": receiver.on_header_value,
        "on_header_end": receiver.on_header_end,
        "on_headers_finished": receiver.on_headers_finished,
        "on_part_data": receiver.on_part_data,
        "on_part_end": receiver.on_part_end,
    }
    parser = MultipartParser(boundary, callbacks)  # type: ignore[arg-type]
    try:
        async for chunk in request.stream():
            parser.write(chunk)
        parser.finalize()
    except MultipartParseError as exc:
        upload.discard()
        raise ApiError(400, "bad_request", f"malformed multipart body: {exc}") from None
    except BaseException:  # the client's mistake, a disconnect, a full disk: keep nothing
        upload.discard()
        raise
    finally:
        receiver.close()
    if upload.path is None:
        raise ApiError(422, "validation_error", f"the form has no {file_field!r} file field")
    return upload
