"""Object storage: one contract for the local folder and S3 (a real Ceph RGW), then what
is particular to each: atomic local writes, presigned URLs the S3 server itself checks,
readiness errors, and the URLs that configure it."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from taskmill.errors import ConfigError
from taskmill.images import storage as storage_module
from taskmill.images.errors import StorageError
from taskmill.images.storage import (
    FileStorage,
    S3Storage,
    Storage,
    object_key,
    open_storage,
    validate_key,
)
from tests.images.helpers import rewritten_in_a_loop
from tests.pg import free_port
from tests.s3 import S3Endpoint

ID = "0196a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"
SECRET = b"not used by these storages"
NewKey = Callable[..., str]

# -- keys ---------------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["originals", "resized", "compressed", "thumbnails"])
def test_object_key_builds_prefix_id_extension(prefix: str) -> None:
    assert object_key(prefix, ID, "jpg") == f"{prefix}/{ID}.jpg"
    assert object_key(prefix, ID, ".WEBP") == f"{prefix}/{ID}.webp"


@pytest.mark.parametrize(
    "key",
    [
        "", "resized", f"resized/{ID}", f"{ID}.jpg", f"other/{ID}.jpg", f"/resized/{ID}.jpg",
        f"resized/../{ID}.jpg", f"../resized/{ID}.jpg", f"resized/{ID}.jpg/..",
        f"resized\\{ID}.jpg", f"resized/{ID}.jpg\x00.txt", f"resized/{ID}.jpg\n",
        f"resized//{ID}.jpg", f"resized/{ID.upper()}.jpg", f"resized/{ID}.JPG",
        f"resized/{ID}.", f"resized/{ID}.averyverylongext", f"resized/x{ID}.jpg",
        f"resized/sub/{ID}.jpg", f"resized/.tmp-abc{ID}.jpg.part", "resized/%2e%2e/x.jpg",
    ],
)  # fmt: skip
def test_validate_key_refuses_every_other_shape(key: str) -> None:
    with pytest.raises(ValueError, match="not a storage key"):
        validate_key(key)


def test_object_key_refuses_bad_parts() -> None:
    for prefix, image_id, ext in [("tmp", ID, "jpg"), ("resized", "../x", "jpg"),
                                  ("resized", ID, "j/pg"), ("resized", ID, "")]:  # fmt: skip
        with pytest.raises(ValueError):
            object_key(prefix, image_id, ext)


# -- the contract, on each kind of storage ------------------------------------------------


def test_put_fetch_exists_delete(
    storage: Storage, sample: Path, tmp_path: Path, new_key: NewKey
) -> None:
    key = new_key()
    assert not storage.exists(key)
    storage.put_file(key, sample, content_type="image/jpeg")
    assert storage.exists(key)
    storage.fetch(key, tmp_path / "back")
    assert (tmp_path / "back").read_bytes() == sample.read_bytes()
    storage.delete([key])
    assert not storage.exists(key)


def test_put_replaces_the_object(storage: Storage, tmp_path: Path, new_key: NewKey) -> None:
    key = new_key()
    for content in (b"first version, longer than the second", b"second"):
        (tmp_path / "src").write_bytes(content)
        storage.put_file(key, tmp_path / "src", content_type="image/jpeg")
    storage.fetch(key, tmp_path / "back")
    assert (tmp_path / "back").read_bytes() == b"second"


def test_put_with_move_stores_the_same_bytes_and_replaces(
    storage: Storage, tmp_path: Path, new_key: NewKey
) -> None:
    """The caller is done with the source (an upload, a rendition): storage may take it."""
    key = new_key()
    for content in (b"first, moved into place", b"second, over it"):
        source = tmp_path / "made"
        source.write_bytes(content)
        source.chmod(0o600)
        storage.put_file(key, source, content_type="image/jpeg", move=True)
        storage.fetch(key, tmp_path / "back")
        assert (tmp_path / "back").read_bytes() == content
    if isinstance(storage, FileStorage):
        assert not (tmp_path / "made").exists()  # renamed, not copied
        assert storage.path_of(key).stat().st_mode & 0o777 == 0o644


def test_delete_many_and_missing_is_fine(storage: Storage, sample: Path, new_key: NewKey) -> None:
    keys = [new_key(prefix) for prefix in ("originals", "resized", "compressed", "thumbnails")]
    for key in keys:
        storage.put_file(key, sample, content_type="image/jpeg")
    storage.delete([*keys, new_key()])  # one never existed
    storage.delete(keys)  # all gone already
    storage.delete([])
    assert not any(storage.exists(k) for k in keys)


def test_fetch_of_a_missing_object_is_a_storage_error(
    storage: Storage, tmp_path: Path, new_key: NewKey
) -> None:
    key = new_key()
    with pytest.raises(StorageError, match=key):
        storage.fetch(key, tmp_path / "back")


def test_every_method_refuses_a_bad_key(
    storage: Storage, sample: Path, tmp_path: Path, new_key: NewKey
) -> None:
    bad = "../secret.key"
    calls: list[Any] = [
        lambda: storage.put_file(bad, sample, content_type="image/jpeg"),
        lambda: storage.fetch(bad, tmp_path / "x"),
        lambda: storage.exists(bad),
        lambda: storage.local_path(bad),
        lambda: storage.delete([new_key(), bad]),
        lambda: storage.url(bad, expires_s=60, base_url="http://x"),
    ]
    for call in calls:
        with pytest.raises(ValueError):
            call()


def test_check_passes_on_a_usable_storage(storage: Storage) -> None:
    storage.check()


# -- local folder ---------------------------------------------------------------------------


def test_file_storage_layout_and_local_path(
    file_storage: FileStorage, sample: Path, new_key: NewKey
) -> None:
    key = new_key("thumbnails", "webp")
    file_storage.put_file(key, sample, content_type="image/webp")
    path = file_storage.local_path(key)
    assert path == file_storage.root / key
    assert path.read_bytes() == sample.read_bytes()
    assert oct(path.stat().st_mode & 0o777) == oct(0o644)
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no temp files left


def test_file_storage_readers_never_see_part_of_a_file(
    file_storage: FileStorage, tmp_path: Path, new_key: NewKey
) -> None:
    """While one thread rewrites an object over and over, alternating two contents of
    different sizes, every read gets one of them whole."""
    key = new_key()
    versions = [os.urandom(300 * 1024), os.urandom(700 * 1024)]
    seen = set()
    with rewritten_in_a_loop(file_storage, key, versions, tmp_path):
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline:
            content = file_storage.local_path(key).read_bytes()
            assert content in versions, f"read {len(content)} bytes, a torn file"
            seen.add(versions.index(content))
    assert seen == {0, 1}
    assert [p.name for p in file_storage.local_path(key).parent.iterdir()] == [key.split("/")[1]]


def test_file_storage_failed_put_leaves_nothing(
    file_storage: FileStorage, tmp_path: Path, new_key: NewKey
) -> None:
    key = new_key()
    with pytest.raises(StorageError, match="no such file"):
        file_storage.put_file(key, tmp_path / "missing", content_type="image/jpeg")
    assert list(file_storage.local_path(key).parent.iterdir()) == []


def test_file_storage_check_creates_the_folder(file_storage: FileStorage) -> None:
    assert not file_storage.root.exists()
    file_storage.check()
    assert file_storage.root.is_dir()
    assert list(file_storage.root.iterdir()) == []


def test_file_storage_check_fails_clearly(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    storage = open_storage(f"file://{tmp_path}/a-file/media", secret=SECRET)
    with pytest.raises(StorageError, match=r"storage folder .*a-file/media is not writable"):
        storage.check()


def test_file_storage_url_is_signed(
    file_storage: FileStorage, secret: bytes, new_key: NewKey
) -> None:
    key = new_key()
    before = time.time()
    url = file_storage.url(key, expires_s=600, base_url="https://img.example/")
    prefix = f"https://img.example/media/{key}?expires="
    assert url.startswith(prefix)
    expires, _, signature = url.removeprefix(prefix).partition("&signature=")
    assert before + 600 <= int(expires) <= time.time() + 601
    assert storage_module.verify_media_signature(secret, key, expires, signature) is None


# -- S3 (a real Ceph RGW) ---------------------------------------------------------------------


def _keys_in(server: S3Endpoint, bucket: str) -> list[str]:
    listing = server.client().list_objects_v2(Bucket=bucket)
    return [o["Key"] for o in listing.get("Contents", [])]


def test_s3_objects_are_really_stored_and_really_gone(
    s3_storage: Storage, s3_server: S3Endpoint, s3_bucket: str, sample: Path, new_key: NewKey
) -> None:
    key = new_key("originals", "png")
    s3_storage.put_file(key, sample, content_type="image/png")
    assert s3_storage.local_path(key) is None
    head = s3_server.client().head_object(Bucket=s3_bucket, Key=key)
    assert (head["ContentType"], head["ContentLength"]) == ("image/png", sample.stat().st_size)
    s3_storage.delete([key])
    assert _keys_in(s3_server, s3_bucket) == []


def test_s3_delete_goes_in_batches(
    s3_storage: Storage, s3_server: S3Endpoint, s3_bucket: str, sample: Path,
    monkeypatch: pytest.MonkeyPatch, new_key: NewKey,
) -> None:  # fmt: skip
    monkeypatch.setattr(storage_module, "S3_DELETE_BATCH", 2)
    keys = [new_key() for _ in range(5)]
    for key in keys:
        s3_storage.put_file(key, sample, content_type="image/jpeg")
    requests: list[int] = []
    assert isinstance(s3_storage, S3Storage)
    s3_storage._client.meta.events.register(
        "before-call.s3.DeleteObjects", lambda params, **_: requests.append(1)
    )
    s3_storage.delete(keys)
    assert len(requests) == 3
    assert _keys_in(s3_server, s3_bucket) == []


def test_s3_large_file_round_trips(s3_storage: Storage, tmp_path: Path, new_key: NewKey) -> None:
    """Above the multipart threshold (8 MiB) the upload goes in parts."""
    big = tmp_path / "big"
    big.write_bytes(os.urandom(9 * 1024 * 1024))
    key = new_key("originals")
    s3_storage.put_file(key, big, content_type="image/jpeg")
    s3_storage.fetch(key, tmp_path / "back")
    assert (tmp_path / "back").read_bytes() == big.read_bytes()


def test_s3_presigned_url_works_and_the_server_checks_it(
    s3_storage: Storage, s3_server: S3Endpoint, s3_bucket: str, sample: Path, new_key: NewKey
) -> None:
    key = new_key()
    s3_storage.put_file(key, sample, content_type="image/jpeg")
    url = s3_storage.url(key, expires_s=300, base_url="http://ignored")
    assert url.startswith(f"{s3_server.url}/{s3_bucket}/{key}?")
    assert "X-Amz-Algorithm=AWS4-HMAC-SHA256" in url
    answer = httpx.get(url)
    assert answer.status_code == 200
    assert answer.content == sample.read_bytes()
    assert answer.headers["content-type"] == "image/jpeg"

    head, _, signature = url.partition("X-Amz-Signature=")
    tampered = head + "X-Amz-Signature=" + ("0" if signature[0] != "0" else "1") + signature[1:]
    assert httpx.get(tampered).status_code == 403
    assert httpx.get(f"{s3_server.url}/{s3_bucket}/{key}").status_code == 403  # anonymous


def test_s3_presigned_url_expires(s3_storage: Storage, sample: Path, new_key: NewKey) -> None:
    key = new_key()
    s3_storage.put_file(key, sample, content_type="image/jpeg")
    signed_at = time.time()
    short = s3_storage.url(key, expires_s=1, base_url="")
    long = s3_storage.url(key, expires_s=300, base_url="")
    # SigV4 dates are whole seconds: wait past the second even if the signing time was
    # rounded down, plus a margin for the server's clock granularity.
    time.sleep(max(0.0, signed_at + 2.1 - time.time()))
    answer = httpx.get(short)
    assert answer.status_code == 403, answer.text
    assert "AccessDenied" in answer.text
    assert httpx.get(long).status_code == 200  # same object, same signer: only time differs


def test_s3_presigned_url_lifetime_is_capped_at_7_days(
    s3_storage: Storage, new_key: NewKey
) -> None:
    url = s3_storage.url(new_key(), expires_s=30 * 86400, base_url="")
    assert "X-Amz-Expires=604800" in url


def test_s3_check_names_a_missing_bucket(s3_env: S3Endpoint) -> None:
    storage = open_storage(s3_env.storage_url("no-such-bucket"), secret=SECRET)
    with pytest.raises(StorageError, match=r"s3://no-such-bucket at http.*does not exist"):
        storage.check()


def test_s3_check_names_an_unreachable_endpoint(s3_env: S3Endpoint) -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"
    storage = open_storage(f"s3://bucket?endpoint_url={endpoint}", secret=SECRET)
    started = time.monotonic()
    with pytest.raises(StorageError, match=f"checking the bucket in s3://bucket at {endpoint}"):
        storage.check()
    assert time.monotonic() - started < 5  # readiness answers fast: no retries


def test_s3_check_reports_wrong_credentials(
    s3_env: S3Endpoint, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
    storage = open_storage(s3_env.storage_url(s3_bucket), secret=SECRET)
    with pytest.raises(StorageError, match="access denied"):
        storage.check()


def test_s3_put_into_a_missing_bucket_is_a_storage_error(
    s3_env: S3Endpoint, sample: Path, new_key: NewKey
) -> None:
    storage = open_storage(s3_env.storage_url("no-such-bucket"), secret=SECRET)
    with pytest.raises(StorageError, match=r"storing resized/.*NoSuchBucket"):
        storage.put_file(new_key(), sample, content_type="image/jpeg")


# -- TASKMILL_STORAGE_URL -----------------------------------------------------------------------


def test_file_urls_relative_and_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    relative = open_storage("file://taskmill-data/media", secret=SECRET)
    absolute = open_storage(f"file://{tmp_path}/elsewhere", secret=SECRET)
    assert isinstance(relative, FileStorage) and isinstance(absolute, FileStorage)
    assert relative.root == tmp_path / "taskmill-data" / "media"
    assert absolute.root == tmp_path / "elsewhere"
    assert relative.kind == "file"


def test_s3_url_parts() -> None:
    storage = open_storage(
        "s3://my.bucket-1?endpoint_url=https://s3.example:9000&region=eu-west-3", secret=SECRET
    )
    assert isinstance(storage, S3Storage)
    assert (storage.kind, storage.bucket) == ("s3", "my.bucket-1")
    assert (storage.endpoint_url, storage.region) == ("https://s3.example:9000", "eu-west-3")
    plain = open_storage("s3://bucket", secret=SECRET)
    assert isinstance(plain, S3Storage)
    assert (plain.endpoint_url, plain.region) == (None, None)


@pytest.mark.parametrize(
    "url",
    [
        "", "media", "/srv/media", "ftp://host/x", "file://", "file://media?x=1", "s3://",
        "s3://ab", "s3://Bucket", "s3://bucket/prefix", "s3://user:pw@bucket",
        "s3://bucket?region=", "s3://bucket?endpoint=http://x", "s3://bucket?endpoint_url=x",
        "s3://bucket?endpoint_url=ftp://host", "s3://bucket?region=a&region=b",
        "s3://bucket?endpoint_url", "s3://bucket#frag",
    ],
)  # fmt: skip
def test_bad_storage_urls_name_the_variable(url: str) -> None:
    with pytest.raises(ConfigError, match="TASKMILL_STORAGE_URL"):
        open_storage(url, secret=SECRET)
