"""An app with the image tasks on the test's database and a media folder of its own."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from PIL import Image as PILImage

from taskmill import Taskmill
from taskmill.config import Settings
from taskmill.images.storage import Storage
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


@contextmanager
def rewritten_in_a_loop(
    storage: Storage, key: str, versions: list[bytes], folder: Path
) -> Iterator[None]:
    """While the body runs, a thread stores `versions` under `key` over and over, in turn
    (the first is in place before the body starts)."""
    sources = []
    for i, content in enumerate(versions):
        sources.append(folder / f"version-{i}")
        sources[-1].write_bytes(content)
    storage.put_file(key, sources[0], content_type="image/jpeg")
    stop = threading.Event()

    def rewrite() -> None:
        i = 0
        while not stop.is_set():
            i += 1
            storage.put_file(key, sources[i % len(sources)], content_type="image/jpeg")

    writer = threading.Thread(target=rewrite)
    writer.start()
    try:
        yield
    finally:
        stop.set()
        writer.join()
