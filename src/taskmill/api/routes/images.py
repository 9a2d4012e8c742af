"""/api/images: upload an image, follow its renditions, list and delete images."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Query, Request, Response
from fastapi.responses import JSONResponse

from taskmill.api.auth import bearer_token
from taskmill.api.errors import ApiError
from taskmill.api.ratelimit import RateLimiter
from taskmill.api.routes.responses import errors
from taskmill.api.routes.tasks import ID_PATTERN
from taskmill.api.schemas import ImageOut, ImagePage
from taskmill.api.uploads import receive_upload
from taskmill.images.records import Image
from taskmill.images.service import ImageService

FILE_FIELD = "file"
ImageId = Annotated[str, Path(description="The image's id", pattern=ID_PATTERN)]

_UPLOAD_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": [FILE_FIELD],
                    "additionalProperties": False,
                    "properties": {
                        FILE_FIELD: {"type": "string", "format": "binary",
                                     "description": "JPEG, PNG, WebP, GIF, TIFF or AVIF (HEIC "
                                     "where libvips can decode HEVC)"},
                        "webhook_url": {"type": "string", "description":
                                        "POSTed the image JSON when processing ends (signed)"},
                        "renditions": {"type": "string", "description":
                                       'JSON overrides, e.g. {"resized": {"width": 800, '
                                       '"format": "webp"}}'},
                    },
                }
            }
        },
    }
}  # fmt: skip


def router(
    images: ImageService,
    dependencies: list[Any],
    auth_errors: tuple[int, ...],
    limiter: RateLimiter | None,
) -> APIRouter:
    api = APIRouter(prefix="/api/images", tags=["images"], dependencies=dependencies)
    max_bytes = images.settings.max_upload_bytes
    uploads_dir = images.settings.data_dir / "uploads"

    @api.post(
        "", status_code=202, response_model=None, openapi_extra=_UPLOAD_BODY,
        responses={202: {"model": ImageOut},
                   **errors(*auth_errors, 400, 413, 415, 422, 429, 503)},
        summary="Upload an image",
    )  # fmt: skip
    async def upload(
        request: Request,
        idempotency_key: Annotated[
            str | None, Header(max_length=200, description="The same key returns the same image")
        ] = None,
    ) -> Response:
        """Checks the file (size, format sniffed from the bytes, pixel count from the
        header), stores it, and queues its processing: 202 with the image, `pending`."""
        if limiter is not None:
            limiter.check(_client(request))
        received = await receive_upload(
            request, file_field=FILE_FIELD, max_file_bytes=max_bytes, directory=uploads_dir
        )
        try:
            unknown = set(received.fields) - {"webhook_url", "renditions"}
            if unknown:
                raise ApiError(422, "validation_error", f"unknown form fields {sorted(unknown)}")
            assert received.path is not None
            path, fields = received.path, received.fields
            body = await _shown(images, request, lambda: images.accept(
                path, webhook_url=fields.get("webhook_url") or None,
                renditions=fields.get("renditions") or None, idempotency_key=idempotency_key,
            )[0])  # fmt: skip
        finally:
            received.discard()
        location = f"/api/images/{body['id']}"
        return JSONResponse(body, status_code=202, headers={"location": location})

    @api.get(
        "/{image_id}", response_model=ImageOut, responses=errors(*auth_errors, 404, 503),
        summary="Read an image",
    )  # fmt: skip
    async def get_image(image_id: ImageId, request: Request) -> Any:
        """The image with signed URLs for its original and every rendition made so far."""
        return await _shown(images, request, lambda: images.get(image_id))

    @api.get(
        "", response_model=ImagePage, responses=errors(*auth_errors, 422, 503),
        summary="List images",
    )  # fmt: skip
    async def list_images(
        request: Request,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
        cursor: Annotated[
            str | None, Query(description="`next_cursor` of the previous page", pattern=ID_PATTERN)
        ] = None,
    ) -> Any:
        """Newest first; follow `next_cursor` to page."""
        base = _base_url(request)

        def listed() -> dict[str, Any]:
            page, next_cursor = images.list(limit=limit, cursor=cursor or None)
            return {
                "images": [images.to_json(i, base_url=base) for i in page],
                "next_cursor": next_cursor,
            }

        return await asyncio.to_thread(listed)

    @api.delete(
        "/{image_id}", status_code=204, responses=errors(*auth_errors, 404, 503),
        summary="Delete an image",
    )  # fmt: skip
    async def delete_image(image_id: ImageId) -> Response:
        """Deletes the record and every file of the image; its URLs stop working."""
        await asyncio.to_thread(images.delete, image_id)
        return Response(status_code=204)

    return api


async def _shown(
    images: ImageService, request: Request, fetch: Callable[[], Image]
) -> dict[str, Any]:
    """The image `fetch` gives, as JSON with signed URLs: both off the event loop (signing
    may call the object store's client), in one hand-off to a thread."""
    base = _base_url(request)
    return await asyncio.to_thread(lambda: images.to_json(fetch(), base_url=base))


def _base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def _client(request: Request) -> str:
    """Who a rate limit counts against: the API key when there is one, else the address."""
    token = bearer_token(request.headers.get("authorization"))
    if token:
        return "key:" + token
    return "addr:" + (request.client.host if request.client else "unknown")
