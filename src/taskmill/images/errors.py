"""Why an image is refused or cannot be processed (taskmill.api.errors maps each to its
HTTP status)."""

from __future__ import annotations

from taskmill.errors import TaskmillError, TransientError, ValidationError


class ImageRefused(ValidationError):
    """An upload is refused before anything is stored."""


class UnsupportedImage(ImageRefused):
    """The bytes are not an image format taskmill reads (sniffed, never from the name)."""


class ImageTooLarge(ImageRefused):
    """The image declares more pixels than TASKMILL_MAX_IMAGE_PIXELS allows."""


class UnreadableImage(ImageRefused):
    """The header cannot be read: a truncated, corrupt or empty file."""


class UploadTooLarge(ImageRefused):
    """The uploaded file is over TASKMILL_MAX_UPLOAD_BYTES."""


class CorruptImage(TaskmillError):
    """Decoding failed part-way (truncated or damaged data): the job fails, without retries."""


class StorageError(TransientError):
    """The object store failed (unreachable, denied); the operation may be retried."""
