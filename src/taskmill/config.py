"""Settings from TASKMILL_* environment variables; every default stated once, with its unit."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from taskmill.errors import ConfigError

DEFAULT_DATABASE_URL = "sqlite:///taskmill-data/taskmill.db"
DEFAULT_STORAGE_URL = "file://taskmill-data/media"

_DURATION_UNITS_S = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_SIZE_UNITS = {
    "": 1, "b": 1, "kb": 1000, "mb": 1000**2, "gb": 1000**3,
    "kib": 1024, "mib": 1024**2, "gib": 1024**3,
}  # fmt: skip


def parse_duration_s(text: str, *, name: str) -> float:
    """'90', '90s', '15m', '24h', '7d' -> seconds. A bare number is seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*", text.lower())
    if not m:
        raise ConfigError(f"{name}: {text!r} is not a duration (examples: 30s, 15m, 24h, 7d)")
    return float(m.group(1)) * _DURATION_UNITS_S[m.group(2) or "s"]


def parse_size_bytes(text: str, *, name: str) -> int:
    """'26214400', '25MiB', '10 MB' -> bytes."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmg]i?b|b)?\s*", text.lower())
    if not m:
        raise ConfigError(f"{name}: {text!r} is not a size (examples: 25MiB, 10MB, 1048576)")
    return int(float(m.group(1)) * _SIZE_UNITS[m.group(2) or ""])


def _parse_positive_int(text: str, *, name: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ConfigError(f"{name}: {text!r} is not a whole number") from None
    if value <= 0:
        raise ConfigError(f"{name}: must be positive, got {value}")
    return value


@dataclass(frozen=True, slots=True)
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    storage_url: str = DEFAULT_STORAGE_URL
    api_keys: tuple[str, ...] = ()
    secret_key: str | None = None
    max_upload_bytes: int = 25 * 1024**2
    max_image_pixels: int = 50_000_000
    image_retention_s: float = 24 * 3600.0  # 0 keeps images forever
    job_retention_s: float = 7 * 86400.0
    lease_s: float = 30.0  # a dead worker's jobs come back after at most this long
    extra: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read TASKMILL_* variables (from `env`, default os.environ); keyword `overrides`
        (CLI flags, constructor arguments) win. Raises ConfigError naming the variable."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        if v := env.get("TASKMILL_DATABASE_URL"):
            values["database_url"] = v
        if v := env.get("TASKMILL_STORAGE_URL"):
            values["storage_url"] = v
        if v := env.get("TASKMILL_API_KEYS"):
            values["api_keys"] = tuple(k.strip() for k in v.split(",") if k.strip())
        if v := env.get("TASKMILL_SECRET_KEY"):
            values["secret_key"] = v
        if v := env.get("TASKMILL_MAX_UPLOAD_BYTES"):
            values["max_upload_bytes"] = parse_size_bytes(v, name="TASKMILL_MAX_UPLOAD_BYTES")
        if v := env.get("TASKMILL_MAX_IMAGE_PIXELS"):
            values["max_image_pixels"] = _parse_positive_int(v, name="TASKMILL_MAX_IMAGE_PIXELS")
        if v := env.get("TASKMILL_IMAGE_RETENTION"):
            values["image_retention_s"] = parse_duration_s(v, name="TASKMILL_IMAGE_RETENTION")
        if v := env.get("TASKMILL_JOB_RETENTION"):
            values["job_retention_s"] = parse_duration_s(v, name="TASKMILL_JOB_RETENTION")
        if v := env.get("TASKMILL_LEASE"):
            values["lease_s"] = parse_duration_s(v, name="TASKMILL_LEASE")
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        if not self.database_url.startswith(("sqlite://", "postgresql://", "postgres://")):
            raise ConfigError(
                f"TASKMILL_DATABASE_URL: {self.database_url!r} is neither sqlite:///path "
                "nor postgresql://user:pass@host:port/db"
            )
        if self.lease_s < 1:
            raise ConfigError(f"TASKMILL_LEASE: must be at least 1s, got {self.lease_s}s")

    def with_(self, **changes: Any) -> Settings:
        return replace(self, **changes)
