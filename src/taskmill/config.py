"""Settings from TASKMILL_* environment variables; every default stated once, with its unit."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from taskmill.errors import ConfigError

DEFAULT_DATABASE_URL = "sqlite:///taskmill-data/taskmill.db"
DEFAULT_STORAGE_URL = "file://taskmill-data/media"
DEFAULT_DATA_DIR = "taskmill-data"
DEFAULT_PUBLIC_URL = "http://127.0.0.1:8000"
MIN_MEDIA_URL_TTL_S = 15 * 60.0

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


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most `count` requests per `per_s` seconds (a token bucket of that size)."""

    count: int
    per_s: float

    @classmethod
    def parse(cls, text: str, *, name: str) -> RateLimit | None:
        """'60/m', '10/s', '1000/h' -> RateLimit; '' or '0' -> None (no limit)."""
        text = text.strip().lower()
        if text in ("", "0", "off", "none"):
            return None
        m = re.fullmatch(r"(\d+)\s*/\s*(s|m|h|d)", text)
        if not m or int(m.group(1)) == 0:
            raise ConfigError(f"{name}: {text!r} is not a rate (examples: 10/s, 60/m, 1000/h)")
        return cls(int(m.group(1)), _DURATION_UNITS_S[m.group(2)])


def _parse_bool(text: str, *, name: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"{name}: {text!r} is not a boolean (use true or false)")


def _parse_int_between(text: str, low: int, high: int | None, *, name: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ConfigError(f"{name}: {text!r} is not a whole number") from None
    if high is None and value < low:
        raise ConfigError(f"{name}: must be at least {low}, got {value}")
    if high is not None and not low <= value <= high:
        raise ConfigError(f"{name}: must be between {low} and {high}, got {value}")
    return value


def _text(text: str, _variable: str) -> str:
    return text


def _keys(text: str, _variable: str) -> tuple[str, ...]:
    return tuple(k.strip() for k in text.split(",") if k.strip())


def _duration(text: str, variable: str) -> float:
    return parse_duration_s(text, name=variable)


def _size(text: str, variable: str) -> int:
    return parse_size_bytes(text, name=variable)


def _positive(text: str, variable: str) -> int:
    return _parse_int_between(text, 1, None, name=variable)


def _bool(text: str, variable: str) -> bool:
    return _parse_bool(text, name=variable)


def _rate(text: str, variable: str) -> RateLimit | None:
    return RateLimit.parse(text, name=variable)


def _effort(text: str, variable: str) -> int:
    return _parse_int_between(text, 0, 9, name=variable)


def _url(text: str, _variable: str) -> str:
    return text.rstrip("/")


# Environment variable -> (Settings field, parser). Empty values mean "not set".
_VARIABLES: dict[str, tuple[str, Callable[[str, str], Any]]] = {
    "TASKMILL_DATABASE_URL": ("database_url", _text),
    "TASKMILL_STORAGE_URL": ("storage_url", _text),
    "TASKMILL_API_KEYS": ("api_keys", _keys),
    "TASKMILL_SECRET_KEY": ("secret_key", _text),
    "TASKMILL_MAX_UPLOAD_BYTES": ("max_upload_bytes", _size),
    "TASKMILL_MAX_IMAGE_PIXELS": ("max_image_pixels", _positive),
    "TASKMILL_IMAGE_RETENTION": ("image_retention_s", _duration),
    "TASKMILL_JOB_RETENTION": ("job_retention_s", _duration),
    "TASKMILL_LEASE": ("lease_s", _duration),
    "TASKMILL_PUBLIC_URL": ("public_url", _url),
    "TASKMILL_MEDIA_URL_TTL": ("media_url_ttl_s", _duration),
    "TASKMILL_WEBHOOK_ALLOW_PRIVATE": ("webhook_allow_private", _bool),
    "TASKMILL_UPLOAD_RATE_LIMIT": ("upload_rate_limit", _rate),
    "TASKMILL_RENDITIONS": ("renditions_json", _text),
    "TASKMILL_AVIF_EFFORT": ("avif_effort", _effort),
    "TASKMILL_JPEG_ONE_PASS": ("jpeg_one_pass", _bool),
}


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
    # Where the API is reached from outside: absolute media URLs in webhooks and the CLI.
    public_url: str = DEFAULT_PUBLIC_URL
    media_url_ttl_s: float = 3600.0  # signed media URLs expire after this long
    webhook_allow_private: bool = False  # allow webhooks to loopback/private/link-local hosts
    upload_rate_limit: RateLimit | None = None  # per API key or client address; None: none
    renditions_json: str | None = None  # overrides of the default renditions (JSON object)
    avif_effort: int = 2  # 0 (fastest) .. 9 (smallest); AVIF costs seconds per image at 9
    jpeg_one_pass: bool = True  # false: every JPEG takes the general libvips path
    extra: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read TASKMILL_* variables (from `env`, default os.environ); keyword `overrides`
        (CLI flags, constructor arguments) win. Raises ConfigError naming the variable."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for variable, (name, parse) in _VARIABLES.items():
            if text := env.get(variable):
                values[name] = parse(text, variable)
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
        if not self.public_url.startswith(("http://", "https://")):
            raise ConfigError(
                f"TASKMILL_PUBLIC_URL: {self.public_url!r} must start with http:// or https://"
            )
        if self.media_url_ttl_s < MIN_MEDIA_URL_TTL_S:
            raise ConfigError(
                f"TASKMILL_MEDIA_URL_TTL: must be at least {MIN_MEDIA_URL_TTL_S / 60:g}m (the "
                f"dashboard renews its links every 10 minutes), got {self.media_url_ttl_s:g}s"
            )
        if self.lease_s < 1:
            raise ConfigError(f"TASKMILL_LEASE: must be at least 1s, got {self.lease_s}s")

    @property
    def data_dir(self) -> Path:
        """Where taskmill keeps its own files (the generated secret key): beside the SQLite
        database, else ./taskmill-data."""
        if self.database_url.startswith("sqlite://"):
            from taskmill.store.sqlite import path_from_url

            return Path(path_from_url(self.database_url)).parent
        return Path(DEFAULT_DATA_DIR)

    def with_(self, **changes: Any) -> Settings:
        return replace(self, **changes)
