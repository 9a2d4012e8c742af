"""The image service: accept an upload, process it into renditions, serve, delete, clean up.

Everything an image goes through, whichever door it comes in by (HTTP, the processing job,
the hourly cleanup), lives here; the API routes and the tasks are thin layers over it."""

from __future__ import annotations

import contextlib
import functools
import logging
import tempfile
import weakref
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from taskmill.app import Taskmill
from taskmill.errors import InvalidTransition, JobNotFound, PermanentError
from taskmill.ids import new_id
from taskmill.images.errors import CorruptImage, ImageRefused
from taskmill.images.formats import content_type, probe
from taskmill.images.processing import Rendered, render
from taskmill.images.records import Image, ImageStatus, NewImage, StoredObject
from taskmill.images.renditions import (
    renditions_from_json,
    renditions_to_json,
    resolve_renditions,
)
from taskmill.images.storage import Storage, object_key, open_storage
from taskmill.secrets import load_secret
from taskmill.webhooks import check_target, enqueue_webhook

log = logging.getLogger("taskmill.images")

PROCESS_TASK = "images.process"
CLEANUP_TASK = "images.cleanup"
SETTLE_TASK = "images.settle"
CLEANUP_BATCH = 100
SETTLE_BATCH = 100
# Where each rendition's files go (SPEC §8 storage layout).
RENDITION_PREFIXES = {"resized": "resized", "compressed": "compressed", "thumbnail": "thumbnails"}


class ImageNotFound(JobNotFound):
    """No image has this id."""


class ImageService:
    """Images of one taskmill app: its store, its storage, its secret."""

    def __init__(self, app: Taskmill) -> None:
        self.app = app
        self.settings = app.settings

    @functools.cached_property
    def secret(self) -> bytes:
        return load_secret(self.settings)

    @functools.cached_property
    def storage(self) -> Storage:
        return open_storage(self.settings.storage_url, secret=self.secret)

    def check_storage(self) -> None:
        """Readiness: raises StorageError unless the storage can be used now. (The storage
        is opened on first use, and the secret key generated then, not at start-up.)"""
        self.storage.check()

    @property
    def enabled(self) -> bool:
        """Whether this app has the image tasks (the built-in app has; a user's app has
        them after `app.include(taskmill.builtin.app)`)."""
        return PROCESS_TASK in self.app.tasks

    # -- upload ---------------------------------------------------------------------------

    def accept(
        self,
        upload: Path,
        *,
        webhook_url: str | None = None,
        renditions: str | None = None,
        idempotency_key: str | None = None,
    ) -> tuple[Image, bool]:
        """Check an uploaded file, store it as an original, record the image and enqueue
        its processing. Takes the file: it may be moved into storage rather than copied.
        Returns (image, created); with an idempotency key used before, the first image
        comes back and nothing new is stored. Raises ImageRefused or ValidationError
        before anything is stored."""
        if idempotency_key is not None:
            existing = self.app.store.get_image_by_key(idempotency_key)
            if existing is not None:
                return existing, False
        info = probe(upload, max_pixels=self.settings.max_image_pixels)
        specs = resolve_renditions(self.settings.renditions_json, renditions)
        if webhook_url is not None:
            check_target(webhook_url, allow_private=self.settings.webhook_allow_private)
        image_id = new_id()
        job = self.app.get_task(PROCESS_TASK).new_job([image_id], idempotency_key=image_id)
        original = StoredObject(
            object_key("originals", image_id, info.extension), info.format, info.width,
            info.height, upload.stat().st_size,
        )  # fmt: skip
        self.storage.put_file(original.key, upload, content_type=info.content_type, move=True)
        record = NewImage(
            image_id, job.id, original, renditions_to_json(specs), webhook_url, idempotency_key
        )
        try:
            image, created = self.app.store.insert_image(record, job)
        except BaseException:
            self.storage.delete([original.key])
            raise
        if not created:  # the same key raced in from another request: keep the first
            self.storage.delete([original.key])
        return image, created

    # -- reading and deleting -------------------------------------------------------------

    def get(self, image_id: str) -> Image:
        image = self.app.store.get_image(image_id)
        if image is None:
            raise ImageNotFound(f"no image with id {image_id}")
        return image

    def list(self, *, limit: int, cursor: str | None) -> tuple[list[Image], str | None]:
        images = self.app.store.list_images(limit=limit + 1, before_id=cursor)
        more = len(images) > limit
        images = images[:limit]
        return images, (images[-1].id if more and images else None)

    def delete(self, image_id: str) -> Image:
        """Delete the record, then its files; a pending processing job is cancelled (one
        that is running finds the record gone and removes what it wrote)."""
        image = self.app.store.delete_image(image_id)
        if image is None:
            raise ImageNotFound(f"no image with id {image_id}")
        with contextlib.suppress(JobNotFound, InvalidTransition):  # finished, or pruned
            self.app.cancel(image.job_id)
        self.storage.delete(image.object_keys())
        return image

    def to_json(self, image: Image, *, base_url: str) -> dict[str, Any]:
        """The image as clients see it, with fresh signed URLs valid for
        TASKMILL_MEDIA_URL_TTL."""
        return {
            "id": image.id,
            "status": image.status.value,
            "original": self._object_json(image.original, base_url),
            "renditions": {n: self._object_json(r, base_url) for n, r in image.renditions.items()},
            "error": image.error,
            "created_at": _iso(image.created_at),
            "completed_at": _iso(image.completed_at),
            "job_id": image.job_id,
        }

    def _object_json(self, obj: StoredObject, base_url: str) -> dict[str, Any]:
        url = self.storage.url(obj.key, expires_s=self.settings.media_url_ttl_s, base_url=base_url)
        return {"url": url, "width": obj.width, "height": obj.height, "bytes": obj.bytes,
                "format": obj.format}  # fmt: skip

    # -- processing (the images.process job) ----------------------------------------------

    def process(self, image_id: str) -> dict[str, Any]:
        """Make every rendition of an image and record them. Idempotent: a re-run writes
        the same objects under the same keys and the same record. Bad image data fails the
        image (and the job, without retries); storage or database trouble is retried."""
        image = self.app.store.get_image(image_id)
        if image is None:
            return {"image_id": image_id, "skipped": "the image was deleted"}
        specs = renditions_from_json(image.spec_json)
        with tempfile.TemporaryDirectory(prefix="taskmill-image-") as tmp:
            work = Path(tmp)
            source = self.storage.local_path(image.original.key)
            if source is None:
                source = work / f"original.{Path(image.original.key).suffix.lstrip('.')}"
                self.storage.fetch(image.original.key, source)
            try:
                rendered = render(
                    source, specs, work / "out", max_pixels=self.settings.max_image_pixels,
                    avif_effort=self.settings.avif_effort,
                    one_pass=self.settings.jpeg_one_pass,
                )  # fmt: skip
            except (CorruptImage, ImageRefused) as exc:
                self._finish(image, ImageStatus.FAILED, {}, str(exc))
                raise PermanentError(str(exc)) from exc
            stored = {name: self._store_rendition(image.id, r) for name, r in rendered.items()}
        self._finish(image, ImageStatus.COMPLETED, stored, None)
        return {"image_id": image.id, "renditions": {n: o.key for n, o in stored.items()}}

    def _store_rendition(self, image_id: str, rendered: Rendered) -> StoredObject:
        key = object_key(RENDITION_PREFIXES[rendered.name], image_id, rendered.path.suffix)
        self.storage.put_file(
            key, rendered.path, content_type=content_type(rendered.format), move=True
        )
        return StoredObject(key, rendered.format, rendered.width, rendered.height, rendered.bytes)

    def _finish(
        self, image: Image, status: ImageStatus, renditions: Mapping[str, StoredObject],
        error: str | None,
    ) -> None:  # fmt: skip
        done = self.app.store.finish_image(
            image.id, status=status, renditions=renditions, error=error
        )
        if done is None:  # deleted while we worked: leave nothing behind
            self.storage.delete([r.key for r in renditions.values()])
            return
        self._notify(done)

    def _notify(self, image: Image) -> None:
        """Enqueue the image's webhook for its final status; one per image and event,
        however often this runs (the key makes a repeat return the first job)."""
        if image.webhook_url:
            event = f"image.{image.status.value}"
            enqueue_webhook(
                self.app, image.webhook_url, event,
                self.to_json(image, base_url=self.settings.public_url),
                key=f"{image.id}:{event}",
            )  # fmt: skip

    def settle(self) -> int:
        """Record as failed, and send the webhook of, every image whose job ended without
        finishing it: the worker was killed or timed out on the last attempt, the job was
        cancelled, or retention pruned it. Such an image already reads as failed; this makes
        it so in its record and tells its receiver. The webhook is enqueued first, so a
        crash in between repeats it on the next run rather than losing it. Returns how many
        were settled (the images.settle task runs it every minute)."""
        settled = 0
        while batch := self.app.store.unsettled_images(limit=SETTLE_BATCH):
            done = 0
            for image in batch:
                self._notify(image)
                done += self.app.store.settle_image(image)
            settled += done
            if len(batch) < SETTLE_BATCH or not done:  # the rest moved on meanwhile
                break
        if settled:
            log.info("settled %d images whose processing job ended without them", settled)
        return settled

    # -- retention (the hourly images.cleanup job) ----------------------------------------

    def cleanup(self) -> int:
        """Delete images older than TASKMILL_IMAGE_RETENTION with their files, a batch at
        a time. Files go first: if storage fails, the records stay and the next run tries
        again, so nothing is left without a record. Returns how many were deleted."""
        retention_s = self.settings.image_retention_s
        if retention_s <= 0:
            return 0
        deleted = 0
        while batch := self.app.store.expired_images(older_than_s=retention_s, limit=CLEANUP_BATCH):
            self.storage.delete([key for image in batch for key in image.object_keys()])
            deleted += self.app.store.delete_images([image.id for image in batch])
            log.info("cleanup: deleted %d images older than %ss", len(batch), retention_s)
            if len(batch) < CLEANUP_BATCH:
                break
        return deleted


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


_services: weakref.WeakKeyDictionary[Taskmill, ImageService] = weakref.WeakKeyDictionary()


def image_service(app: Taskmill) -> ImageService:
    """The one ImageService of `app` (it holds the storage client, which is costly)."""
    service = _services.get(app)
    if service is None:
        service = _services[app] = ImageService(app)
    return service
