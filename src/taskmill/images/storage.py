"""Object storage for image files: a local folder, or an S3 bucket (AWS or S3-compatible).

Keys have one shape, `<prefix>/<uuid>.<ext>` (see `validate_key`), so a key can never name a
path outside the storage root, whatever a URL or a database row says. Local files are
served by the API through HMAC-signed, expiring URLs (`verify_media_signature`); S3
objects through presigned URLs that the S3 server checks itself.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import hmac
import math
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

from taskmill.errors import ConfigError
from taskmill.images.errors import StorageError

KEY_PREFIXES = ("originals", "resized", "compressed", "thumbnails")
STORAGE_URL_NAME = "TASKMILL_STORAGE_URL"

_UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
_KEY = re.compile(rf"(?:{'|'.join(KEY_PREFIXES)})/{_UUID}\.[a-z0-9]{{1,8}}")
_EXPIRES = re.compile(r"[0-9]{1,12}")
_SIGNATURE = re.compile(r"[0-9a-f]{64}")
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_S3_PARAMS = ("endpoint_url", "region")

CONTENT_TYPES = {
    "jpg": "image/jpeg", "jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp",
    "avif": "image/avif", "gif": "image/gif", "tif": "image/tiff", "tiff": "image/tiff",
    "heic": "image/heic", "heif": "image/heif", "bmp": "image/bmp",
}  # fmt: skip
COPY_CHUNK_BYTES = 1024 * 1024
S3_DELETE_BATCH = 1000  # the most keys one DeleteObjects request takes
S3_MAX_PRESIGN_S = 7 * 86400  # SigV4 presigned URLs cannot live longer


def validate_key(key: str) -> str:
    """`key` itself when it is `<prefix>/<lowercase uuid>.<ext>` with a known prefix; else
    ValueError. Nothing else is a key: no other folders, no "..", no absolute paths, no
    backslashes or control characters, no temporary files of a write in progress."""
    if not isinstance(key, str) or not _KEY.fullmatch(key):
        raise ValueError(f"not a storage key: {key!r}")
    return key


def object_key(prefix: str, image_id: str, extension: str) -> str:
    """The key of one file of an image: `object_key("resized", id, "jpg")` is
    "resized/<id>.jpg". The extension may come with its dot (".JPG" is "jpg")."""
    return validate_key(f"{prefix}/{image_id}.{extension.lower().removeprefix('.')}")


def content_type_of(key: str) -> str:
    """The Content-Type for a key's extension (application/octet-stream when unknown)."""
    return CONTENT_TYPES.get(key.rpartition(".")[2].lower(), "application/octet-stream")


class Storage(Protocol):
    """Where image files live. Every method takes a key that `validate_key` accepts (and
    raises ValueError for any other); failures of the store itself raise StorageError."""

    kind: str  # "file" or "s3"

    def put_file(self, key: str, source: Path, *, content_type: str, move: bool = False) -> None:
        """Store the file at `source` (streamed, never read whole into memory) under `key`,
        replacing any object there; readers see the old object or the new one, never part.
        `move`: the caller is done with `source`, which may be moved rather than copied."""

    def fetch(self, key: str, dest: Path) -> None:
        """Copy the object to the local file `dest`. StorageError when it does not exist."""

    def local_path(self, key: str) -> Path | None:
        """The object's own file, to read without copying (it may not exist); None when the
        storage is not a local folder."""

    def delete(self, keys: Iterable[str]) -> None:
        """Delete these objects; keys that do not exist are not an error."""

    def exists(self, key: str) -> bool: ...

    def url(self, key: str, *, expires_s: float, base_url: str) -> str:
        """A URL that lets anyone holding it GET the object for `expires_s` seconds. Local
        folders: `{base_url}/media/{key}?expires=&signature=`; S3: a presigned URL (capped
        at 7 days, the SigV4 limit; `base_url` is not used)."""

    def check(self) -> None:
        """Readiness: raise StorageError, in one line, unless the storage can be used now."""


def open_storage(url: str, *, secret: bytes) -> Storage:
    """The storage TASKMILL_STORAGE_URL names: "file://relative/path", "file:///abs/path",
    or "s3://bucket?endpoint_url=http://host:port&region=...". `secret` signs local media
    URLs. S3 credentials come from boto3's usual chain (AWS_* variables, ~/.aws, roles).
    Nothing is contacted here (see `check`). Raises ConfigError for a URL it cannot use."""
    scheme, sep, rest = url.partition("://")
    if sep and scheme == "file":
        return FileStorage(_file_root(url, rest), secret)
    if sep and scheme == "s3":
        return S3Storage.from_url(url)
    raise ConfigError(
        f"{STORAGE_URL_NAME}: {url!r} is neither file://path nor "
        "s3://bucket?endpoint_url=...&region=..."
    )


def _file_root(url: str, path: str) -> Path:
    if not path or "?" in path or "#" in path:
        raise ConfigError(
            f"{STORAGE_URL_NAME}: {url!r}: give a folder, e.g. file://taskmill-data/media"
            " or file:///srv/media"
        )
    # Absolute now, so a later change of working directory cannot move the storage.
    return Path(path).expanduser().absolute()


# -- signed local media URLs -------------------------------------------------------------


def sign_media(secret: bytes, key: str, expires: int) -> str:
    """The hex HMAC-SHA256 of `key` and the Unix time it expires at."""
    return hmac.new(secret, f"{key}\n{expires}".encode(), hashlib.sha256).hexdigest()


def verify_media_signature(
    secret: bytes, key: str, expires: str, signature: str, *, now: float | None = None
) -> str | None:
    """None when `signature` signs `key` with `expires` and that time has not come yet; else
    why not: "missing expires", "missing signature", "malformed expires", "invalid
    signature" or "expired". The signature is checked first, in constant time, so a forged
    URL learns nothing about expiry."""
    if not expires:
        return "missing expires"
    if not signature:
        return "missing signature"
    if not _EXPIRES.fullmatch(expires):
        return "malformed expires"
    expected = sign_media(secret, key, int(expires))
    if not hmac.compare_digest(expected.encode(), signature.encode()):
        return "invalid signature"
    if (time.time() if now is None else now) >= int(expires):
        return "expired"
    return None


# -- local folder ---------------------------------------------------------------------------


class FileStorage:
    """Objects as files under `root` (`root/resized/<id>.jpg`), served by the API's
    /media route. Writes go to a temporary file beside the target and are renamed over it,
    so a reader (or a crash) never meets half a file and a re-run overwrites cleanly."""

    kind = "file"

    def __init__(self, root: Path, secret: bytes) -> None:
        self.root = root
        self._secret = secret

    def path_of(self, key: str) -> Path:
        return self.root / validate_key(key)

    def put_file(self, key: str, source: Path, *, content_type: str, move: bool = False) -> None:
        target = self.path_of(key)
        with _os_errors(f"storing {key} in {self.root}"):
            target.parent.mkdir(parents=True, exist_ok=True)
            if move and _moved(source, target):
                return
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=".part")
            try:
                with source.open("rb") as src, os.fdopen(fd, "wb") as dst:
                    shutil.copyfileobj(src, dst, COPY_CHUNK_BYTES)
                    dst.flush()
                    os.fsync(dst.fileno())  # the rename must not land before the bytes
                os.chmod(tmp, 0o644)  # mkstemp makes 0600; media are not secrets
                os.replace(tmp, target)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise

    def fetch(self, key: str, dest: Path) -> None:
        with _os_errors(f"fetching {key} from {self.root}"):
            shutil.copyfile(self.path_of(key), dest)

    def local_path(self, key: str) -> Path:
        return self.path_of(key)

    def delete(self, keys: Iterable[str]) -> None:
        paths = [self.path_of(k) for k in keys]  # refuse a bad key before deleting any
        with _os_errors(f"deleting from {self.root}"):
            for path in paths:
                path.unlink(missing_ok=True)

    def exists(self, key: str) -> bool:
        return self.path_of(key).is_file()

    def url(self, key: str, *, expires_s: float, base_url: str) -> str:
        validate_key(key)
        expires = math.ceil(time.time() + expires_s)
        signature = sign_media(self._secret, key, expires)
        return f"{base_url.rstrip('/')}/media/{key}?expires={expires}&signature={signature}"

    def refusal(self, key: str, expires: str, signature: str) -> str | None:
        """Why a /media URL for `key` (from `url`) is refused now, or None when it is good:
        signed with this storage's secret and not expired."""
        return verify_media_signature(self._secret, key, expires, signature)

    def check(self) -> None:
        with _os_errors(f"storage folder {self.root} is not writable"):
            self.root.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=self.root, prefix=".check-"):
                pass


def _moved(source: Path, target: Path) -> bool:
    """Rename `source` into place (flushed first, so the rename never lands before the
    bytes); False when it is on another filesystem and must be copied instead."""
    fd = os.open(source, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.fchmod(fd, 0o644)  # uploads and renditions are made 0600; media are not secrets
    finally:
        os.close(fd)
    try:
        os.replace(source, target)
    except OSError as exc:
        if exc.errno == errno.EXDEV:
            return False
        raise
    return True


@contextlib.contextmanager
def _os_errors(doing: str) -> Iterator[None]:
    try:
        yield
    except FileNotFoundError as exc:
        raise StorageError(f"{doing}: no such file {exc.filename}") from exc
    except OSError as exc:
        raise StorageError(f"{doing}: {exc.strerror or exc}") from exc


# -- S3 ---------------------------------------------------------------------------------------


class S3Storage:
    """Objects in one S3 bucket. Uploads stream from disk (multipart above 8 MiB); URLs
    are SigV4 presigned GETs, so the S3 server itself enforces signature and expiry."""

    kind = "s3"

    def __init__(self, bucket: str, *, endpoint_url: str | None, region: str | None) -> None:
        import boto3  # here: processes on a local folder need not import boto3 at all

        self.bucket = bucket
        self.endpoint_url = endpoint_url
        self.region = region
        self._session = boto3.session.Session()
        self._client = self._make_client(attempts=4, connect_timeout_s=5, read_timeout_s=60)

    @classmethod
    def from_url(cls, url: str) -> S3Storage:
        """Parse "s3://bucket?endpoint_url=...&region=..."; ConfigError names what is wrong."""
        parts = urlsplit(url)
        if not _BUCKET.fullmatch(parts.netloc) or parts.path not in ("", "/") or parts.fragment:
            raise ConfigError(
                f"{STORAGE_URL_NAME}: {url!r}: expected s3://bucket?endpoint_url=...&region=..."
                " (a bucket name of 3-63 lowercase letters, digits, dots or dashes, no path)"
            )
        try:
            params = parse_qs(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
        except ValueError:
            raise ConfigError(f"{STORAGE_URL_NAME}: {url!r}: malformed query string") from None
        unknown = sorted(set(params) - set(_S3_PARAMS))
        if unknown or any(len(v) != 1 or not v[0] for v in params.values()):
            raise ConfigError(
                f"{STORAGE_URL_NAME}: {url!r}: the query takes endpoint_url and region,"
                " each once and not empty"
                + (f" (unknown: {', '.join(unknown)})" if unknown else "")
            )
        endpoint = params.get("endpoint_url", [None])[0]
        if endpoint is not None:
            ep = urlsplit(endpoint)
            if ep.scheme not in ("http", "https") or not ep.hostname:
                raise ConfigError(
                    f"{STORAGE_URL_NAME}: endpoint_url {endpoint!r} must be http(s)://host[:port]"
                )
        return cls(parts.netloc, endpoint_url=endpoint, region=params.get("region", [None])[0])

    def _make_client(
        self, *, attempts: int, connect_timeout_s: float, read_timeout_s: float
    ) -> Any:
        from botocore.config import Config

        options: dict[str, Any] = {}
        if self.endpoint_url is not None:
            # S3-compatible servers: bucket in the path (no wildcard DNS needed), and
            # checksums only where S3 requires them (boto3 sends CRC trailers by default,
            # which several S3-compatible servers refuse).
            options = {
                "s3": {"addressing_style": "path"},
                "request_checksum_calculation": "when_required",
                "response_checksum_validation": "when_required",
            }
        config = Config(
            signature_version="s3v4",  # without it presigned URLs are signed with SigV2
            retries={"max_attempts": attempts, "mode": "standard"},
            connect_timeout=connect_timeout_s,
            read_timeout=read_timeout_s,
            **options,
        )
        return self._session.client(
            "s3", endpoint_url=self.endpoint_url, region_name=self.region, config=config
        )

    @functools.cached_property
    def _check_client(self) -> Any:
        # Readiness must answer fast: one attempt, short timeouts (the main client retries).
        return self._make_client(attempts=1, connect_timeout_s=2, read_timeout_s=5)

    @functools.cached_property
    def _transfer(self) -> Any:
        from boto3.s3.transfer import TransferConfig

        return TransferConfig(multipart_threshold=8 * 1024**2, max_concurrency=4)

    def put_file(self, key: str, source: Path, *, content_type: str, move: bool = False) -> None:
        validate_key(key)
        extra = {"ContentType": content_type} if content_type else {}
        with self._errors(f"storing {key}"):
            self._client.upload_file(
                str(source), self.bucket, key, ExtraArgs=extra, Config=self._transfer
            )

    def fetch(self, key: str, dest: Path) -> None:
        validate_key(key)
        with self._errors(f"fetching {key}"):
            self._client.download_file(self.bucket, key, str(dest), Config=self._transfer)

    def local_path(self, key: str) -> None:
        validate_key(key)

    def delete(self, keys: Iterable[str]) -> None:
        objects = [{"Key": validate_key(k)} for k in keys]
        for start in range(0, len(objects), S3_DELETE_BATCH):
            batch = objects[start : start + S3_DELETE_BATCH]
            with self._errors("deleting objects"):
                answer = self._client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True}
                )
            if failed := answer.get("Errors"):
                first = failed[0]
                raise StorageError(
                    f"deleting {len(failed)} object(s) from s3://{self.bucket} failed, first "
                    f"{first.get('Key')}: {first.get('Code')} {first.get('Message', '')}".strip()
                )

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        validate_key(key)
        with self._errors(f"looking up {key}"):
            try:
                self._client.head_object(Bucket=self.bucket, Key=key)
            except ClientError as exc:
                if _error_code(exc) in ("404", "NoSuchKey", "NotFound"):
                    return False
                raise
        return True

    def url(self, key: str, *, expires_s: float, base_url: str) -> str:
        validate_key(key)
        expires = min(max(1, math.ceil(expires_s)), S3_MAX_PRESIGN_S)
        with self._errors(f"signing a URL for {key}"):
            return str(
                self._client.generate_presigned_url(
                    "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=expires
                )
            )

    def check(self) -> None:
        with self._errors("checking the bucket"):
            self._check_client.head_bucket(Bucket=self.bucket)

    @contextlib.contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        """Driver errors as one-line StorageErrors saying what failed, and where."""
        from boto3.exceptions import Boto3Error
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

        where = f"s3://{self.bucket}" + (f" at {self.endpoint_url}" if self.endpoint_url else "")
        try:
            yield
        except ClientError as exc:
            raise StorageError(f"{doing} in {where}: {_describe(exc)}") from exc
        except NoCredentialsError as exc:
            raise StorageError(
                f"{doing} in {where}: no AWS credentials (set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY, or an AWS profile)"
            ) from exc
        except (BotoCoreError, Boto3Error, OSError) as exc:
            raise StorageError(f"{doing} in {where}: {_one_line(exc)}") from exc


def _error_code(exc: Any) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _describe(exc: Any) -> str:
    code = _error_code(exc)
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    if code in ("404", "NoSuchBucket") and exc.operation_name == "HeadBucket":
        return "the bucket does not exist"
    if code in ("404", "NoSuchKey"):
        return "no such object"
    if code in ("403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
        return f"access denied ({code}; check the AWS credentials)"
    message = exc.response.get("Error", {}).get("Message") or ""
    return _one_line(f"{code or status} {message}".strip() or str(exc))


def _one_line(exc: object) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
