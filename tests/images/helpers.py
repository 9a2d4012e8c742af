"""An app with the image tasks on the test's database and a media folder of its own."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PIL import Image as PILImage

from taskmill import Taskmill
from taskmill.config import Settings
from taskmill.images.tasks import register_image_tasks
from taskmill.webhooks import register_webhook_task

SECRET = "images-test-secret"


def make_image_app(database_url: str, media: Path, **settings: Any) -> Taskmill:
    """Image and webhook tasks (as in the built-in app), loopback webhooks allowed."""
    options: dict[str, Any] = {
        "database_url": database_url, "storage_url": f"file://{media}", "secret_key": SECRET,
        "webhook_allow_private": True, **settings,
    }  # fmt: skip
    app = Taskmill(settings=Settings.from_env({}, **options))
    register_image_tasks(app)
    register_webhook_task(app)
    return app


def write_jpeg(
    path: Path, width: int, height: int, colour: tuple[int, int, int] = (200, 80, 40)
) -> Path:
    """A plain JPEG of one colour (Pillow, so the code under test does not make its own
    input)."""
    PILImage.new("RGB", (width, height), colour).save(path, "JPEG", quality=90)
    return path


def truncated_copy(source: Path, dest: Path, keep: float = 0.5) -> Path:
    data = source.read_bytes()
    dest.write_bytes(data[: int(len(data) * keep)])
    return dest
