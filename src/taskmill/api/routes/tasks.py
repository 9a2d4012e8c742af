"""/api/tasks: submit, read, list, cancel and retry jobs."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response

from taskmill.api.routes.responses import errors
from taskmill.api.schemas import MAX_SUBMIT_BYTES, JobOut, JobPage, SubmitRequest, job_json
from taskmill.api.service import ApiService
from taskmill.jobs import Job, JobStatus

JobId = Annotated[str, Path(description="The job's id")]
JSON = "application/json"
ID_PATTERN = r"^$|^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"


def router(service: ApiService, dependencies: list[Any], auth_errors: tuple[int, ...]) -> APIRouter:
    api = APIRouter(prefix="/api/tasks", tags=["tasks"], dependencies=dependencies)

    @api.post(
        "", status_code=202, response_model=JobOut, max_body_size=MAX_SUBMIT_BYTES,
        responses=errors(*auth_errors, 413, 422, 503),
        summary="Submit a job",
    )  # fmt: skip
    async def submit(body: SubmitRequest) -> Response:
        """Store a job and return it at once (status `pending`). With an
        `idempotency_key` already used for this task, the first job comes back instead."""
        job = await service.submit(body)
        return _job_response(job, 202)

    @api.get(
        "/{job_id}", response_model=JobOut, responses=errors(*auth_errors, 404, 503),
        summary="Read a job",
    )  # fmt: skip
    async def get_job(job_id: JobId) -> Response:
        return _job_response(await service.get(job_id), 200)

    @api.get(
        "", response_model=JobPage, responses=errors(*auth_errors, 422, 503), summary="List jobs"
    )
    async def list_jobs(
        status: JobStatus | None = None,
        queue: str | None = None,
        task: str | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 50,
        cursor: Annotated[
            str | None,
            Query(description="`next_cursor` of the previous page", pattern=ID_PATTERN),
        ] = None,
    ) -> JobPage:
        """Newest first. Follow `next_cursor` to page; pages stay consistent while new jobs
        arrive (they appear on a fresh first page)."""
        jobs, next_cursor = await service.list_jobs(
            status=status, queue=queue, task=task, limit=limit, cursor=cursor
        )
        return JobPage(jobs=[_out(j) for j in jobs], next_cursor=next_cursor)

    @api.post(
        "/{job_id}/cancel", response_model=JobOut,
        responses=errors(*auth_errors, 404, 409, 503), summary="Cancel a job",
    )  # fmt: skip
    async def cancel(job_id: JobId) -> JobOut:
        """A pending job becomes `cancelled` at once; a running one is killed within about
        a second (`cancel_requested` is true until then). 409 once it has finished."""
        return _out(await service.cancel(job_id))

    @api.post(
        "/{job_id}/retry", response_model=JobOut,
        responses=errors(*auth_errors, 404, 409, 503), summary="Retry a job",
    )  # fmt: skip
    async def retry(job_id: JobId) -> JobOut:
        """Put a `failed` or `cancelled` job back to `pending` with a fresh attempt budget.
        409 from any other state."""
        return _out(await service.retry(job_id))

    return api


def _out(job: Job) -> JobOut:
    return JobOut.model_validate(job, from_attributes=True)


def _job_response(job: Job, status: int) -> Response:
    headers = {"location": f"/api/tasks/{job.id}"} if status == 202 else None
    return Response(job_json(job), status_code=status, media_type=JSON, headers=headers)
