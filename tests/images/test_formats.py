"""Formats are told from the bytes; probing reads the header only and refuses early."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from taskmill.images.errors import ImageTooLarge, UnreadableImage, UnsupportedImage
from taskmill.images.formats import ImageInfo, loadable_formats, probe, sniff
from tests.images import fixtures

LIMIT = 50_000_000


@pytest.mark.parametrize(
    ("pillow_format", "expected"),
    [
        ("JPEG", "jpeg"),
        ("PNG", "png"),
        ("WEBP", "webp"),
        ("GIF", "gif"),
        ("TIFF", "tiff"),
        ("AVIF", "avif"),
    ],
)
def test_sniff_tells_each_format_from_its_first_bytes(pillow_format: str, expected: str) -> None:
    assert sniff(fixtures.encoded(pillow_format)[:64]) == expected


def test_sniff_tells_heic_from_avif_by_brand(tmp_path: Path) -> None:
    assert sniff(fixtures.heic_branded(tmp_path / "x.heic").read_bytes()[:64]) == "heif"


@pytest.mark.parametrize(
    "head",
    [
        b"",
        b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n",
        b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>',
        b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2mp41",  # an MP4 video
        b"RIFF\x24\x00\x00\x00WAVEfmt ",  # RIFF, but audio
        b"\xff\xd8",  # two bytes are not a JPEG yet
        b"BM\x36\x00\x0c\x00\x00\x00",  # BMP: an image, but not one taskmill takes
    ],
)
def test_sniff_refuses_everything_else(head: bytes) -> None:
    assert sniff(head) is None


def test_sniff_ignores_the_file_name(tmp_path: Path) -> None:
    path = tmp_path / "photo.jpg"
    path.write_bytes(fixtures.encoded("PNG"))
    assert probe(path, max_pixels=LIMIT).format == "png"


def test_this_build_decodes_avif_but_not_heic() -> None:
    assert loadable_formats() == {"jpeg", "png", "webp", "gif", "tiff", "avif"}


def test_probe_reports_format_size_and_pages(tmp_path: Path) -> None:
    info = probe(fixtures.animated_gif(tmp_path / "a.gif"), max_pixels=LIMIT)
    assert info == ImageInfo(format="gif", width=200, height=150, pages=3)
    assert (info.content_type, info.extension) == ("image/gif", "gif")


def test_probe_reports_the_displayed_size_of_a_rotated_photo(tmp_path: Path) -> None:
    info = probe(fixtures.exif_rotated(tmp_path / "r.jpg"), max_pixels=LIMIT)
    assert (info.format, info.width, info.height, info.pages) == ("jpeg", 300, 400, 1)
    assert (info.content_type, info.extension) == ("image/jpeg", "jpg")


def test_probe_reads_avif(tmp_path: Path) -> None:
    path = tmp_path / "a.avif"
    path.write_bytes(fixtures.encoded("AVIF", size=(64, 48)))
    info = probe(path, max_pixels=LIMIT)
    assert (info.format, info.width, info.height, info.content_type) == (
        "avif",
        64,
        48,
        "image/avif",
    )


def test_probe_refuses_heic_which_this_build_cannot_decode(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedImage, match="HEIC images cannot be decoded"):
        probe(fixtures.heic_branded(tmp_path / "a.heic"), max_pixels=LIMIT)


def test_pixel_limit_is_inclusive(tmp_path: Path) -> None:
    path = tmp_path / "a.png"
    path.write_bytes(fixtures.encoded("PNG", size=(100, 50)))
    assert probe(path, max_pixels=5000).width == 100
    with pytest.raises(ImageTooLarge, match=r"100x50 \(5,000 pixels\); the limit is 4,999"):
        probe(path, max_pixels=4999)


def test_a_tiny_file_declaring_ten_gigapixels_is_refused_without_decoding(tmp_path: Path) -> None:
    path = fixtures.huge_declared_png(tmp_path / "bomb.png")
    assert path.stat().st_size < 100
    started = time.perf_counter()
    with pytest.raises(ImageTooLarge, match=r"100000x100000"):
        probe(path, max_pixels=LIMIT)
    assert time.perf_counter() - started < 1.0  # a decode would take minutes and 30 GB


@pytest.mark.parametrize("make", [fixtures.random_bytes, fixtures.pdf])
def test_non_images_are_unsupported(tmp_path: Path, make: fixtures.Maker) -> None:
    with pytest.raises(UnsupportedImage, match="not an image taskmill reads"):
        probe(make(tmp_path / "upload.jpg"), max_pixels=LIMIT)


def test_an_empty_file_is_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "empty.jpg"
    path.touch()
    with pytest.raises(UnreadableImage, match="the file is empty"):
        probe(path, max_pixels=LIMIT)


def test_a_jpeg_cut_inside_its_header_is_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "cut.jpg"
    path.write_bytes(fixtures.encoded("JPEG")[:120])
    with pytest.raises(UnreadableImage, match=r"^the JPEG header cannot be read: .*JPEG"):
        probe(path, max_pixels=LIMIT)
