"""The image service on each backend: accept an upload, process it, read, delete, clean up.

Processing runs in the test process here (the job's function, called as a worker would);
tests/images/test_end_to_end.py drives the same path through HTTP and real workers."""

from __future__ import annotations

import itertools
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from PIL import Image as PILImage

from taskmill import JobStatus, PermanentError, Taskmill
from taskmill.images.errors import UnsupportedImage
from taskmill.images.processing import render
from taskmill.images.records import ImageStatus
from taskmill.images.renditions import DEFAULT_RENDITIONS
from taskmill.images.service import PROCESS_TASK, ImageNotFound, ImageService, image_service
from tests.helpers import RawDb, claim_one, finish
from tests.images.helpers import make_image_app, truncated_copy, write_jpeg
from tests.s3 import S3Endpoint


@pytest.fixture
def app(database_url: str, tmp_path: Path) -> Iterator[Taskmill]:
    app = make_image_app(database_url, tmp_path / "media")
    app.migrate()
    yield app
    app.close()


@pytest.fixture
def images(app: Taskmill) -> ImageService:
    return image_service(app)


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    return write_jpeg(tmp_path / "photo.jpg", 1600, 1200)


def upload(photo: Path) -> Path:
    """A fresh copy to hand to accept(), which takes (moves) the file it is given."""
    copy = photo.with_name(f"upload-{next(_uploads)}{photo.suffix}")
    shutil.copyfile(photo, copy)
    return copy


_uploads = itertools.count()


def media_files(app: Taskmill) -> set[str]:
    root = Path(app.settings.storage_url.removeprefix("file://"))
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def test_an_accepted_upload_is_stored_recorded_and_queued(
    app: Taskmill, images: ImageService, photo: Path
) -> None:
    image, created = images.accept(upload(photo))

    assert created and image.status is ImageStatus.PENDING
    assert (image.original.format, image.original.width, image.original.height) == (
        "jpeg", 1600, 1200,
    )  # fmt: skip
    assert image.original.bytes == photo.stat().st_size
    assert not any(photo.parent.glob("upload-*"))  # the upload was taken, not copied
    assert media_files(app) == {f"originals/{image.id}.jpg"}
    job = app.get(image.job_id)
    assert (job.task, job.args, job.queue, job.status) == (
        PROCESS_TASK, [image.id], "images", JobStatus.PENDING,
    )  # fmt: skip
    assert images.get(image.id) == image


def test_the_same_idempotency_key_gives_the_same_image_and_stores_one_file(
    app: Taskmill, images: ImageService, photo: Path
) -> None:
    first, created = images.accept(upload(photo), idempotency_key="upload-1")
    again, created_again = images.accept(upload(photo), idempotency_key="upload-1")

    assert created and not created_again
    assert again == first
    assert media_files(app) == {f"originals/{first.id}.jpg"}
    assert len(app.list(task=PROCESS_TASK)) == 1


def test_a_file_that_is_not_an_image_is_refused_and_nothing_is_kept(
    app: Taskmill, images: ImageService, tmp_path: Path
) -> None:
    fake = tmp_path / "fake.jpg"
    fake.write_bytes(b"%PDF-1.7\n" + b"x" * 200)
    with pytest.raises(UnsupportedImage):
        images.accept(fake)
    assert media_files(app) == set()
    assert app.list() == []


def test_processing_makes_every_rendition_and_a_rerun_changes_nothing(
    app: Taskmill, images: ImageService, photo: Path
) -> None:
    image, _ = images.accept(upload(photo))
    result = images.process(image.id)

    done = images.get(image.id)
    assert done.status is ImageStatus.COMPLETED and done.error is None
    assert done.completed_at is not None
    sizes = {name: (r.width, r.height, r.format) for name, r in done.renditions.items()}
    assert sizes == {
        "resized": (1024, 768, "jpeg"),
        "compressed": (1600, 1200, "jpeg"),
        "thumbnail": (300, 300, "jpeg"),
    }
    expected_keys = {
        f"originals/{image.id}.jpg", f"resized/{image.id}.jpg",
        f"compressed/{image.id}.jpg", f"thumbnails/{image.id}.jpg",
    }  # fmt: skip
    assert media_files(app) == expected_keys
    assert set(result["renditions"].values()) == expected_keys - {f"originals/{image.id}.jpg"}
    root = Path(app.settings.storage_url.removeprefix("file://"))
    before = {key: (root / key).read_bytes() for key in expected_keys}
    for key, obj in ((r.key, r) for r in done.renditions.values()):
        assert (root / key).stat().st_size == obj.bytes
        with PILImage.open(root / key) as decoded:
            assert decoded.size == (obj.width, obj.height)

    images.process(image.id)  # a retry after a lost report: same objects, same record

    assert images.get(image.id).renditions == done.renditions
    assert {key: (root / key).read_bytes() for key in expected_keys} == before


def test_a_truncated_image_fails_with_a_readable_error_and_no_retry(
    app: Taskmill, images: ImageService, photo: Path, tmp_path: Path
) -> None:
    image, _ = images.accept(truncated_copy(photo, tmp_path / "cut.jpg"))

    with pytest.raises(PermanentError) as raised:
        images.process(image.id)

    failed = images.get(image.id)
    assert failed.status is ImageStatus.FAILED
    assert failed.error is not None and str(raised.value) == failed.error
    assert "truncat" in failed.error.lower() or "premature" in failed.error.lower()
    assert failed.renditions == {}


def test_status_follows_the_job_until_the_image_is_finished(
    app: Taskmill, images: ImageService, photo: Path
) -> None:
    image, _ = images.accept(upload(photo))
    job = claim_one(app.store)
    assert job.id == image.job_id
    assert images.get(image.id).status is ImageStatus.RUNNING

    # The worker was killed on the last attempt (timeout): the job failed, the image
    # never heard of it. Clients still see the truth.
    finish(app.store, job, JobStatus.FAILED, error="TimeoutError: job timed out after 300s")
    failed = images.get(image.id)
    assert failed.status is ImageStatus.FAILED
    assert failed.error == "TimeoutError: job timed out after 300s"
    assert failed.completed_at is not None


def deliveries(app: Taskmill) -> list[tuple[str, dict[str, object]]]:
    """(event, payload) of each webhook delivery job enqueued so far, oldest first."""
    jobs = sorted(app.list(task="taskmill.webhook", limit=100), key=lambda j: j.id)
    return [(j.kwargs["event"], j.kwargs["payload"]) for j in jobs]


def test_an_image_whose_job_failed_without_it_is_settled_once_with_its_webhook(
    app: Taskmill, images: ImageService, photo: Path, database_url: str
) -> None:
    image, _ = images.accept(upload(photo), webhook_url="http://127.0.0.1:9/hook")
    busy, _ = images.accept(upload(photo))
    job = claim_one(app.store)
    claim_one(app.store)  # `busy` is being processed: nothing to settle there
    # killed or timed out on its last attempt: the job failed, the image was never told
    finish(app.store, job, JobStatus.FAILED, error="TimeoutError: job timed out after 300s")

    assert images.settle() == 1
    db = RawDb(database_url)
    try:
        record = db.fetch_one("taskmill_images", "id", image.id)
    finally:
        db.close()
    assert record is not None
    assert (record["status"], record["error"]) == (
        "failed", "TimeoutError: job timed out after 300s",
    )  # fmt: skip
    assert images.get(busy.id).status is ImageStatus.RUNNING
    [(event, payload)] = deliveries(app)
    assert event == "image.failed"
    assert (payload["id"], payload["status"]) == (image.id, "failed")
    assert payload["error"] == "TimeoutError: job timed out after 300s"
    assert images.settle() == 0 and len(deliveries(app)) == 1

    # Retried by hand, it is pending again, then running, and completes after all.
    app.retry(image.job_id)
    assert (images.get(image.id).status, images.get(image.id).error) == (ImageStatus.PENDING, None)
    assert claim_one(app.store, queues=["images"]).id == image.job_id
    assert images.get(image.id).status is ImageStatus.RUNNING
    images.process(image.id)
    assert images.get(image.id).status is ImageStatus.COMPLETED
    assert [event for event, _ in deliveries(app)] == ["image.failed", "image.completed"]


def test_cancelled_or_pruned_jobs_settle_their_images_as_failed(
    app: Taskmill, images: ImageService, photo: Path, database_url: str
) -> None:
    cancelled, _ = images.accept(upload(photo))
    pruned, _ = images.accept(upload(photo))
    app.cancel(cancelled.job_id)
    finish(app.store, claim_one(app.store), JobStatus.FAILED, error="boom")
    db = RawDb(database_url)
    try:  # job retention removes finished jobs after a while
        db.set_time("taskmill_jobs", pruned.job_id, "finished_at",
                    datetime.now(UTC) - timedelta(days=30))  # fmt: skip
        assert app.store.prune_jobs(older_than_s=7 * 86400, limit=10) == 1
    finally:
        db.close()

    errors = {i: images.get(i).error for i in (cancelled.id, pruned.id)}
    assert errors == {
        cancelled.id: "processing was cancelled",
        pruned.id: "the processing job no longer exists",
    }
    assert images.settle() == 2
    assert {images.get(i).status for i in errors} == {ImageStatus.FAILED}
    assert {i: images.get(i).error for i in errors} == errors
    assert deliveries(app) == []  # no webhook_url, nothing to send


def test_delete_removes_the_record_every_file_and_the_pending_job(
    app: Taskmill, images: ImageService, photo: Path
) -> None:
    image, _ = images.accept(upload(photo))
    images.process(image.id)
    other, _ = images.accept(upload(photo))

    images.delete(image.id)
    images.delete(other.id)  # still pending: its job is cancelled

    assert media_files(app) == set()
    with pytest.raises(ImageNotFound):
        images.get(image.id)
    with pytest.raises(ImageNotFound):
        images.delete(image.id)
    assert app.get(other.job_id).status is JobStatus.CANCELLED
    assert images.process(other.id)["skipped"]  # a job that ran anyway writes nothing
    assert media_files(app) == set()


def test_list_is_newest_first_and_pages_with_a_cursor(images: ImageService, photo: Path) -> None:
    ids = [images.accept(upload(photo))[0].id for _ in range(5)]
    first, cursor = images.list(limit=3, cursor=None)
    second, end = images.list(limit=3, cursor=cursor)

    assert [i.id for i in first + second] == ids[::-1]
    assert cursor == first[-1].id and end is None


def test_cleanup_deletes_exactly_the_images_past_retention(
    app: Taskmill, images: ImageService, photo: Path, database_url: str
) -> None:
    old = [images.accept(upload(photo))[0] for _ in range(3)]
    fresh = images.accept(upload(photo))[0]
    images.process(old[0].id)
    db = RawDb(database_url)
    try:
        for image, age_h in zip(old, (25, 48, 24.1), strict=True):
            db.set_time("taskmill_images", image.id, "created_at",
                        datetime.now(UTC) - timedelta(hours=age_h))  # fmt: skip
        assert app.settings.image_retention_s == 24 * 3600
        assert images.cleanup() == 3
    finally:
        db.close()

    assert [i.id for i in images.list(limit=10, cursor=None)[0]] == [fresh.id]
    assert media_files(app) == {f"originals/{fresh.id}.jpg"}
    assert images.cleanup() == 0


def test_completion_enqueues_one_signed_webhook_delivery(
    app: Taskmill, images: ImageService, photo: Path
) -> None:
    image, _ = images.accept(upload(photo), webhook_url="http://127.0.0.1:9/hook")
    images.process(image.id)
    images.process(image.id)  # re-run: no second delivery

    deliveries = app.list(task="taskmill.webhook")
    assert len(deliveries) == 1
    url, event, payload = (deliveries[0].kwargs[k] for k in ("url", "event", "payload"))
    assert (url, event) == ("http://127.0.0.1:9/hook", "image.completed")
    assert isinstance(payload, dict)
    assert payload["id"] == image.id and payload["status"] == "completed"
    assert set(payload["renditions"]) == {"resized", "compressed", "thumbnail"}
    assert payload["renditions"]["thumbnail"]["url"].startswith(app.settings.public_url)


def test_on_s3_the_same_path_gives_presigned_urls_and_delete_empties_the_bucket(
    database_url: str, tmp_path: Path, s3_env: S3Endpoint, s3_bucket: str, photo: Path
) -> None:
    app = make_image_app(
        database_url, tmp_path / "unused", storage_url=s3_env.storage_url(s3_bucket)
    )
    app.migrate()
    images = image_service(app)
    bucket = s3_env.client()
    try:
        image, _ = images.accept(upload(photo))
        images.process(image.id)
        done = images.get(image.id)
        body = images.to_json(done, base_url="http://unused.test")

        stored = {o["Key"] for o in bucket.list_objects_v2(Bucket=s3_bucket)["Contents"]}
        assert stored == set(done.object_keys())
        thumbnail = body["renditions"]["thumbnail"]["url"]
        assert thumbnail.startswith(s3_env.url) and "X-Amz-Signature=" in thumbnail
        served = httpx.get(thumbnail)
        assert (
            served.status_code == 200 and len(served.content) == done.renditions["thumbnail"].bytes
        )
        assert (
            httpx.get(thumbnail.replace("X-Amz-Signature=", "X-Amz-Signature=0")).status_code == 403
        )

        images.delete(image.id)
        assert "Contents" not in bucket.list_objects_v2(Bucket=s3_bucket)
        assert httpx.get(thumbnail).status_code in (403, 404)
    finally:
        app.close()


@pytest.mark.parametrize("one_pass", [True, False])
def test_jpeg_one_pass_setting_chooses_how_jpegs_are_decoded(
    database_url: str, tmp_path: Path, one_pass: bool
) -> None:
    photo = write_jpeg(tmp_path / "photo.jpg", 2400, 1600)  # big enough to shrink on load
    made = {
        choice: render(photo, DEFAULT_RENDITIONS, tmp_path / str(choice), max_pixels=10**8,
                       one_pass=choice)["compressed"].path.read_bytes()
        for choice in (True, False)
    }  # fmt: skip
    assert made[True] != made[False]
    app = make_image_app(database_url, tmp_path / "media", jpeg_one_pass=one_pass)
    app.migrate()
    try:
        images = image_service(app)
        image, _ = images.accept(upload(photo))
        images.process(image.id)
        key = images.get(image.id).renditions["compressed"].key
        assert (tmp_path / "media" / key).read_bytes() == made[one_pass]
    finally:
        app.close()
