"""Why an image is refused or cannot be processed. The API maps each to its status code."""

from __future__ import annotations

from taskmill.errors import TaskmillError, TransientError, ValidationError


class ImageRefused(ValidationError):
    """An upload is refused before anything is stored; `status` is the HTTP answer."""

    status = 422
    code = "invalid_image"


class UnsupportedImage(ImageRefused):
    """The bytes are not an image format taskmill reads (sniffed, never from the name)."""

    status = 415
    code = "unsupported_media_type"


class ImageTooLarge(ImageRefused):
    """The image declares more pixels than TASKMILL_MAX_IMAGE_PIXELS allows."""

    code = "image_too_large"


class UnreadableImage(ImageRefused):
    """The header cannot be read: a truncated, corrupt or empty file."""

    code = "unreadable_image"


class UploadTooLarge(ImageRefused):
    """The uploaded file is over TASKMILL_MAX_UPLOAD_BYTES."""

    status = 413
    code = "payload_too_large"


class CorruptImage(TaskmillError):
    """Decoding failed part-way (truncated or damaged data): the job fails, without retries."""


class StorageError(TransientError):
    """The object store failed (unreachable, denied); the operation may be retried."""
