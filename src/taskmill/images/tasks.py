"""The image tasks of the built-in app: processing an upload, settling images whose job
ended without them, and the hourly cleanup."""

from __future__ import annotations

from typing import Any

from taskmill.app import Taskmill
from taskmill.context import running_app
from taskmill.images.service import CLEANUP_TASK, PROCESS_TASK, SETTLE_TASK, image_service


def register_image_tasks(app: Taskmill) -> Taskmill:
    @app.task(name=PROCESS_TASK, queue="images", max_retries=3, timeout=300)
    def process_image(image_id: str) -> dict[str, Any]:
        """Make the renditions of one uploaded image."""
        return image_service(running_app(app)).process(image_id)

    @app.periodic("* * * * *", name=SETTLE_TASK, queue="images", timeout=300)
    def settle_images() -> dict[str, int]:
        """Record images whose processing job ended without them as failed; send their
        webhooks."""
        return {"settled": image_service(running_app(app)).settle()}

    @app.periodic("0 * * * *", name=CLEANUP_TASK, queue="images", timeout=3600)
    def cleanup_images() -> dict[str, int]:
        """Delete images older than TASKMILL_IMAGE_RETENTION, with their files."""
        return {"deleted": image_service(running_app(app)).cleanup()}

    return app
