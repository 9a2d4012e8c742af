"""The image methods of the Store protocol, written once for both backends: each store
says how it runs a named query and how its rows look; the SQL is per dialect
(sql/<dialect>/queries_images.sql). Only `insert_image`, one transaction over two tables,
stays with each store."""

from __future__ import annotations

import json
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from taskmill.images.records import Image, ImageStatus, StoredObject, image_from_row
from taskmill.store.base import clean_text

Rows = list[dict[str, Any]]


class ImageRecords(ABC):
    epoch_times: ClassVar[bool]  # times are Unix seconds (SQLite)
    json_text: ClassVar[bool]  # JSON columns come as text (SQLite)

    @abstractmethod
    def _image_read(self, name: str, params: dict[str, Any]) -> Rows:
        """Run a named read-only query; its rows."""

    @abstractmethod
    def _image_write(self, name: str, params: dict[str, Any]) -> Rows:
        """Run a named statement that writes, in its own transaction; its rows."""

    def _images(self, rows: Sequence[Mapping[str, Any]]) -> list[Image]:
        return [image_from_row(r, epoch_times=self.epoch_times, json_text=self.json_text)
                for r in rows]  # fmt: skip

    def _one(self, name: str, params: dict[str, Any]) -> Image | None:
        found = self._images(self._image_read(name, params))
        return found[0] if found else None

    def get_image(self, image_id: str) -> Image | None:
        return self._one("get_image", {"id": image_id})

    def get_image_by_key(self, idempotency_key: str) -> Image | None:
        return self._one("get_image_by_key", {"key": idempotency_key})

    def list_images(self, *, limit: int, before_id: str | None) -> list[Image]:
        return self._images(
            self._image_read("list_images", {"before_id": before_id, "limit": limit})
        )

    def finish_image(
        self, image_id: str, *, status: ImageStatus, renditions: Mapping[str, StoredObject],
        error: str | None,
    ) -> Image | None:  # fmt: skip
        params = {
            "id": image_id, "status": status.value, "error": clean_text(error),
            "renditions": json.dumps({n: r.to_dict() for n, r in renditions.items()}),
        }  # fmt: skip
        rows = self._image_write("finish_image", params)
        return self._images(rows)[0] if rows else None

    def delete_image(self, image_id: str) -> Image | None:
        rows = self._image_write("delete_image", {"id": image_id})
        return self._images(rows)[0] if rows else None

    def expired_images(self, *, older_than_s: float, limit: int) -> list[Image]:
        params = {"now": time.time(), "older_than_s": older_than_s, "limit": limit}
        return self._images(self._image_read("expired_images", params))

    def delete_images(self, image_ids: Sequence[str]) -> int:
        return len(self._image_write("delete_images", {"ids": json.dumps(list(image_ids))}))

    def unsettled_images(self, *, limit: int) -> list[Image]:
        return self._images(self._image_read("unsettled_images", {"limit": limit}))

    def settle_image(self, image: Image) -> bool:
        when = image.completed_at
        params = {
            "id": image.id, "error": clean_text(image.error),
            "completed_at": when.timestamp() if when and self.epoch_times else when,
        }  # fmt: skip
        return bool(self._image_write("settle_image", params))
