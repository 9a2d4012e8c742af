"""What the database keeps about an image: its original, its renditions and their state."""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any


class ImageStatus(enum.StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class StoredObject:
    """One file in storage: the original or a rendition."""

    key: str
    format: str
    width: int
    height: int
    bytes: int

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "format": self.format, "width": self.width,
                "height": self.height, "bytes": self.bytes}  # fmt: skip

    @classmethod
    def from_dict(cls, value: Mapping[str, Any]) -> StoredObject:
        return cls(str(value["key"]), str(value["format"]), int(value["width"]),
                   int(value["height"]), int(value["bytes"]))  # fmt: skip


@dataclass(frozen=True, slots=True)
class NewImage:
    """An accepted upload about to be recorded, with the job that will process it."""

    id: str
    job_id: str
    original: StoredObject
    spec_json: str  # the renditions to make (taskmill.images.renditions JSON)
    webhook_url: str | None = None
    idempotency_key: str | None = None

    def params(self) -> dict[str, Any]:
        return {
            "id": self.id, "job_id": self.job_id,
            "original": json.dumps(self.original.to_dict()), "spec": self.spec_json,
            "webhook_url": self.webhook_url, "key": self.idempotency_key,
        }  # fmt: skip


@dataclass(frozen=True, slots=True)
class Image:
    id: str
    job_id: str
    status: ImageStatus
    original: StoredObject
    spec_json: str
    created_at: datetime
    renditions: dict[str, StoredObject] = field(default_factory=dict)
    webhook_url: str | None = None
    idempotency_key: str | None = None
    error: str | None = None
    completed_at: datetime | None = None

    def object_keys(self) -> list[str]:
        """Every storage key this image owns (the original first)."""
        return [self.original.key, *(r.key for r in self.renditions.values())]


def _time(value: Any, epoch: bool) -> datetime | None:
    if value is None:
        return None
    return datetime.fromtimestamp(value, UTC) if epoch else value


def _json(value: Any, text: bool) -> Any:
    if isinstance(value, bytes | str) and text:
        return json.loads(value)
    return value


def image_from_row(row: Mapping[str, Any], *, epoch_times: bool, json_text: bool) -> Image:
    """A row of taskmill_images or of the taskmill_images_state view. `epoch_times` and
    `json_text` as for jobs: SQLite keeps Unix seconds and JSON text."""
    renditions = _json(row["renditions"], json_text) or {}
    spec = row["spec"]
    return Image(
        id=str(row["id"]),
        job_id=str(row["job_id"]),
        status=ImageStatus(row["status"]),
        original=StoredObject.from_dict(_json(row["original"], json_text)),
        spec_json=spec if isinstance(spec, str) else json.dumps(spec),
        created_at=_time(row["created_at"], epoch_times) or datetime.now(UTC),
        renditions={name: StoredObject.from_dict(v) for name, v in renditions.items()},
        webhook_url=row["webhook_url"],
        idempotency_key=row["idempotency_key"],
        error=row["error"],
        completed_at=_time(row["completed_at"], epoch_times),
    )
