"""The error responses routes declare, so OpenAPI documents every status they can answer."""

from __future__ import annotations

from typing import Any

from taskmill.api.schemas import ErrorResponse


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: each status with the error body. 503 (database unreachable)
    is added to every route that reads the database."""
    described = {
        400: "Malformed request body",
        401: "A valid API key is required",
        404: "Not found",
        409: "The job's state does not allow this",
        413: "Request body too large",
        415: "Not a supported image (the format is sniffed from the bytes)",
        422: "Invalid request: unknown task, bad arguments or options, unreadable image",
        429: "Rate limit reached; see Retry-After",
        503: "The database or the object storage is unreachable",
    }
    return {s: {"model": ErrorResponse, "description": described[s]} for s in statuses}
