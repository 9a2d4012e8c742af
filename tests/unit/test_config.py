"""Settings from TASKMILL_* variables: units, defaults, and errors that name the variable."""

from __future__ import annotations

import pytest

from taskmill import ConfigError, Taskmill
from taskmill.config import (
    DEFAULT_DATABASE_URL,
    Settings,
    parse_duration_s,
    parse_size_bytes,
)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90", 90.0),
        ("90s", 90.0),
        ("250ms", 0.25),
        ("15m", 900.0),
        ("24h", 86400.0),
        ("7d", 604800.0),
        ("2w", 1209600.0),
        ("1.5h", 5400.0),
        (" 10 M ", 600.0),
        ("0", 0.0),
    ],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration_s(text, name="X") == seconds


@pytest.mark.parametrize("text", ["", "soon", "-5s", "10y", "1h30m", "5 s s", ".5h", "1e3"])
def test_bad_durations_name_the_variable(text: str) -> None:
    with pytest.raises(ConfigError, match=r"^TASKMILL_JOB_RETENTION: .* is not a duration"):
        parse_duration_s(text, name="TASKMILL_JOB_RETENTION")


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("26214400", 26214400),
        ("25MiB", 25 * 1024**2),
        ("10 MB", 10_000_000),
        ("1kib", 1024),
        ("2GB", 2_000_000_000),
        ("1GiB", 1024**3),
        ("512b", 512),
        ("1.5 KiB", 1536),
    ],
)
def test_sizes(text: str, size: int) -> None:
    assert parse_size_bytes(text, name="X") == size


@pytest.mark.parametrize("text", ["", "big", "-1", "10TB", "5 MiBs", "MiB"])
def test_bad_sizes_name_the_variable(text: str) -> None:
    with pytest.raises(ConfigError, match=r"^TASKMILL_MAX_UPLOAD_BYTES: .* is not a size"):
        parse_size_bytes(text, name="TASKMILL_MAX_UPLOAD_BYTES")


def test_defaults_with_an_empty_environment() -> None:
    settings = Settings.from_env({})
    assert settings.database_url == DEFAULT_DATABASE_URL == "sqlite:///taskmill-data/taskmill.db"
    assert settings.storage_url == "file://taskmill-data/media"
    assert settings.api_keys == ()
    assert settings.secret_key is None
    assert settings.max_upload_bytes == 25 * 1024**2
    assert settings.max_image_pixels == 50_000_000
    assert settings.image_retention_s == 24 * 3600
    assert settings.job_retention_s == 7 * 86400
    assert settings.lease_s == 30.0
    assert settings.jpeg_one_pass is True


def test_every_variable_is_read() -> None:
    settings = Settings.from_env(
        {
            "TASKMILL_DATABASE_URL": "postgresql://u:p@db:5432/jobs",
            "TASKMILL_STORAGE_URL": "s3://bucket?region=eu-west-1",
            "TASKMILL_API_KEYS": " k1, k2,,k3 ",
            "TASKMILL_SECRET_KEY": "s3cret",
            "TASKMILL_MAX_UPLOAD_BYTES": "10MiB",
            "TASKMILL_MAX_IMAGE_PIXELS": "1000000",
            "TASKMILL_IMAGE_RETENTION": "0",
            "TASKMILL_JOB_RETENTION": "30d",
            "TASKMILL_LEASE": "2m",
            "TASKMILL_JPEG_ONE_PASS": "false",
        }
    )
    assert settings.database_url == "postgresql://u:p@db:5432/jobs"
    assert settings.storage_url == "s3://bucket?region=eu-west-1"
    assert settings.api_keys == ("k1", "k2", "k3")
    assert settings.secret_key == "s3cret"
    assert settings.max_upload_bytes == 10 * 1024**2
    assert settings.max_image_pixels == 1_000_000
    assert settings.image_retention_s == 0  # keep images forever
    assert settings.job_retention_s == 30 * 86400
    assert settings.lease_s == 120
    assert settings.jpeg_one_pass is False


def test_empty_variables_mean_the_default() -> None:
    assert Settings.from_env({"TASKMILL_DATABASE_URL": "", "TASKMILL_LEASE": ""}) == Settings()


def test_overrides_win_over_the_environment_and_none_does_not_override() -> None:
    env = {"TASKMILL_DATABASE_URL": "sqlite:///from-env.db", "TASKMILL_LEASE": "60"}
    settings = Settings.from_env(env, database_url="sqlite:///from-flag.db", lease_s=None)
    assert settings.database_url == "sqlite:///from-flag.db"
    assert settings.lease_s == 60


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("TASKMILL_DATABASE_URL", "mysql://db/jobs", "is neither sqlite"),
        ("TASKMILL_MAX_UPLOAD_BYTES", "a lot", "is not a size"),
        ("TASKMILL_MAX_IMAGE_PIXELS", "50MP", "is not a whole number"),
        ("TASKMILL_MAX_IMAGE_PIXELS", "0", "must be at least 1, got 0"),
        ("TASKMILL_MAX_IMAGE_PIXELS", "-5", "must be at least 1, got -5"),
        ("TASKMILL_IMAGE_RETENTION", "forever", "is not a duration"),
        ("TASKMILL_JOB_RETENTION", "7 days", "is not a duration"),
        ("TASKMILL_LEASE", "500ms", "must be at least 1s"),
        ("TASKMILL_LEASE", "x", "is not a duration"),
    ],
)
def test_bad_values_raise_config_error_naming_the_variable(
    variable: str, value: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=rf"^{variable}: .*{message}"):
        Settings.from_env({variable: value})


def test_app_reads_the_database_url_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TASKMILL_DATABASE_URL", "sqlite:///from-env.db")
    assert Taskmill().settings.database_url == "sqlite:///from-env.db"
    assert Taskmill("sqlite:///given.db").settings.database_url == "sqlite:///given.db"
    monkeypatch.setenv("TASKMILL_LEASE", "0")
    with pytest.raises(ConfigError, match="TASKMILL_LEASE"):
        Taskmill()


def test_media_urls_must_outlive_the_dashboards_renewal() -> None:
    with pytest.raises(ConfigError, match=r"TASKMILL_MEDIA_URL_TTL.*15m"):
        Settings.from_env({"TASKMILL_MEDIA_URL_TTL": "5m"})
    assert Settings.from_env({"TASKMILL_MEDIA_URL_TTL": "2h"}).media_url_ttl_s == 7200
