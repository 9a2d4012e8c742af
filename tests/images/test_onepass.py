"""The one-pass JPEG path: one decode making both the full-size JPEG rendition and the
reduced copy the smaller renditions come from. Its outputs are checked against Pillow's
own decode of the same file, at every chroma sampling and at sizes that leave partial
blocks on the right and bottom edges, where a strip-by-strip codec goes wrong first."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from PIL import Image, ImageChops, ImageDraw, ImageOps, ImageStat, JpegImagePlugin

from taskmill.images import onepass
from taskmill.images.processing import render
from taskmill.images.renditions import DEFAULT_RENDITIONS
from tests.helpers import unavailable
from tests.images import fixtures

LIMIT = 50_000_000
SUBSAMPLING = {"4:4:4": 0, "4:2:2": 1, "4:2:0": 2}


@pytest.fixture(autouse=True)
def _built() -> None:
    if not onepass.AVAILABLE:
        unavailable(
            "the one-pass JPEG extension",
            "libjpeg's headers were missing at install (apt-get install libjpeg-dev, then "
            "make clean and install again)",
        )


def scene(path: Path, size: tuple[int, int], **save: object) -> Path:
    """Colour ramps across and down, with sharp-edged shapes touching the right and bottom
    edges: a wrong column or row at an edge shows up as a large local error."""
    width, height = size
    image = Image.new("RGB", size)
    pixels = image.load()
    assert pixels is not None
    for y in range(height):
        for x in range(width):
            pixels[x, y] = (x * 255 // width, y * 255 // height, 255 - x * 255 // width)
    draw = ImageDraw.Draw(image)
    draw.rectangle((width - 7, 0, width - 1, height - 1), fill=(250, 240, 20))
    draw.rectangle((0, height - 5, width - 1, height - 1), fill=(20, 30, 200))
    draw.ellipse((width // 4, height // 4, width // 2, height // 2), fill=(10, 200, 60))
    image.save(path, "JPEG", **save)
    return path


def psnr(a: Image.Image, b: Image.Image) -> float:
    assert a.size == b.size
    squares = ImageStat.Stat(ImageChops.difference(a.convert("RGB"), b.convert("RGB"))).sum2
    mse = sum(squares) / (3 * a.width * a.height)
    return math.inf if mse == 0 else 10 * math.log10(255**2 / mse)


def edges_error(a: Image.Image, b: Image.Image) -> float:
    """Mean absolute difference over the last column and the last row."""
    w, h = a.size
    strips = [(w - 1, 0, w, h), (0, h - 1, w, h)]
    diffs = [ImageChops.difference(a.crop(box), b.crop(box)) for box in strips]
    return max(sum(ImageStat.Stat(d).mean) / 3 for d in diffs)


def tables(image: Image.Image) -> dict[int, list[int]]:
    """A JPEG's quantization tables."""
    assert isinstance(image, JpegImagePlugin.JpegImageFile)
    return {k: list(v) for k, v in image.quantization.items()}


def decoded(path: Path) -> Image.Image:
    image = Image.open(path)
    image.load()
    return image


@pytest.mark.parametrize("sampling", SUBSAMPLING)
@pytest.mark.parametrize("size", [(1001, 667), (640, 480), (37, 1203)])
def test_full_size_jpeg_matches_a_plain_reencode(
    tmp_path: Path, sampling: str, size: tuple[int, int]
) -> None:
    source = scene(tmp_path / "in.jpg", size, quality=95, subsampling=SUBSAMPLING[sampling])
    made = onepass.decode_once(source, quality=60, shrink=2, optimize_coding=False)
    assert made is not None
    (tmp_path / "out.jpg").write_bytes(made.jpeg)
    out = decoded(tmp_path / "out.jpg")
    # A baseline 4:2:0 JPEG of the full size, with the standard q60 tables, no metadata.
    reference = tmp_path / "reference.jpg"
    original = decoded(source)
    original.save(reference, "JPEG", quality=60, subsampling=2)
    assert (out.format, out.mode, out.size) == ("JPEG", "RGB", size)
    assert JpegImagePlugin.get_sampling(out) == 2
    assert not out.info.get("progressive")
    assert tables(out) == tables(decoded(reference))
    assert not {"exif", "icc_profile", "comment"} & out.info.keys()
    # As faithful to the original as Pillow's own re-encode, edges included.
    assert psnr(out, original) >= psnr(decoded(reference), original) - 0.5
    assert edges_error(out, original) <= edges_error(decoded(reference), original) + 2


@pytest.mark.parametrize("sampling", SUBSAMPLING)
@pytest.mark.parametrize("shrink", [2, 4, 8])
@pytest.mark.parametrize("size", [(1001, 667), (640, 480)])
def test_reduced_copy_is_the_box_filtered_original(
    tmp_path: Path, sampling: str, shrink: int, size: tuple[int, int]
) -> None:
    source = scene(tmp_path / "in.jpg", size, quality=95, subsampling=SUBSAMPLING[sampling])
    made = onepass.decode_once(source, quality=60, shrink=shrink, optimize_coding=False)
    assert made is not None
    reduced = Image.frombytes(
        "RGB", (made.reduced.width, made.reduced.height), made.reduced.write_to_memory()
    )
    expected = decoded(source).reduce(shrink)  # box filter; partial boxes at the edges
    assert reduced.size == (-(-size[0] // shrink), -(-size[1] // shrink))
    # Pillow upsamples chroma with a triangle filter before reducing; the one pass
    # averages the chroma samples themselves: a small difference, never an edge error.
    assert psnr(reduced, expected) >= 38
    assert edges_error(reduced, expected) <= 4


def oriented(path: Path, size: tuple[int, int], orientation: int, sampling: str = "4:2:0") -> Path:
    """A scene stored as a camera does: pixels as the sensor read them, and an EXIF
    orientation saying how to turn them for display."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    return scene(path, size, quality=95, subsampling=SUBSAMPLING[sampling], exif=exif)


@pytest.mark.parametrize("sampling", SUBSAMPLING)
@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("size", [(333, 203), (640, 480)])
def test_an_exif_orientation_is_applied_to_both_outputs(
    tmp_path: Path, orientation: int, size: tuple[int, int], sampling: str
) -> None:
    # Odd sizes: turned, the 4:2:0 pairs of pixels must still be the upright image's.
    source = oriented(tmp_path / "in.jpg", size, orientation, sampling)
    upright = ImageOps.exif_transpose(decoded(source))
    made = onepass.decode_once(
        source, quality=75, shrink=4, optimize_coding=False, orientation=orientation
    )
    assert made is not None
    (tmp_path / "out.jpg").write_bytes(made.jpeg)
    out = decoded(tmp_path / "out.jpg")
    assert out.size == upright.size
    assert not out.getexif()  # upright now: no orientation left to apply
    reference = tmp_path / "reference.jpg"
    upright.save(reference, "JPEG", quality=75, subsampling=2)
    assert psnr(out, upright) >= psnr(decoded(reference), upright) - 0.3
    assert edges_error(out, upright) <= edges_error(decoded(reference), upright) + 2
    reduced = Image.frombytes(
        "RGB", (made.reduced.width, made.reduced.height), made.reduced.write_to_memory()
    )
    # Reduced as stored, then turned: the same as the upright image reduced, where the
    # boxes line up (640x480 divides by 4); within a box's offset at the edges otherwise.
    expected = upright.reduce(4)
    assert reduced.size == expected.size
    assert psnr(reduced, expected) >= (38 if size == (640, 480) else 28)


def test_grey_stays_grey_in_the_reduced_copy(tmp_path: Path) -> None:
    source = tmp_path / "in.jpg"
    Image.new("RGB", (64, 48), (100, 100, 100)).save(source, "JPEG", quality=95, subsampling=0)
    made = onepass.decode_once(source, quality=60, shrink=4, optimize_coding=False)
    assert made is not None
    reduced = Image.frombytes("RGB", (16, 12), made.reduced.write_to_memory())
    red, green, blue = reduced.split()
    # R == G == B everywhere: no channel differs anywhere
    assert ImageChops.difference(red, green).getbbox() is None
    assert ImageChops.difference(red, blue).getbbox() is None


def test_a_progressive_jpeg_takes_the_one_pass(tmp_path: Path) -> None:
    source = scene(tmp_path / "in.jpg", (800, 600), quality=90, progressive=True)
    made = onepass.decode_once(source, quality=60, shrink=4, optimize_coding=True)
    assert made is not None
    (tmp_path / "out.jpg").write_bytes(made.jpeg)
    assert psnr(decoded(tmp_path / "out.jpg"), decoded(source)) >= 30


def grey_jpeg(path: Path) -> Path:
    Image.new("L", (300, 200), 128).save(path, "JPEG")
    return path


def png_named_jpg(path: Path) -> Path:
    path.write_bytes(fixtures.encoded("PNG"))
    return path


@pytest.mark.parametrize(
    "make",
    [fixtures.cmyk_jpeg, fixtures.truncated_jpeg, grey_jpeg, png_named_jpg],
    ids=["cmyk", "truncated", "greyscale", "png"],
)
def test_other_files_are_left_to_libvips(tmp_path: Path, make: fixtures.Maker) -> None:
    source = make(tmp_path / "in.jpg")
    assert onepass.decode_once(source, quality=60, shrink=4, optimize_coding=False) is None


@pytest.mark.parametrize("orientation", [1, 6])
def test_render_makes_the_full_size_rendition_in_the_one_pass(
    tmp_path: Path, orientation: int
) -> None:
    source = oriented(tmp_path / "in.jpg", (2400, 1600), orientation)
    result = render(source, DEFAULT_RENDITIONS, tmp_path / "one", max_pixels=LIMIT)
    made = onepass.decode_once(
        source, quality=60, shrink=2, optimize_coding=False, orientation=orientation
    )
    assert made is not None
    assert result["compressed"].path.read_bytes() == made.jpeg
    # The same renditions as libvips' two decodes make, to the eye.
    general = render(source, DEFAULT_RENDITIONS, tmp_path / "two", max_pixels=LIMIT, one_pass=False)
    assert general["compressed"].path.read_bytes() != made.jpeg
    for name, rendered in result.items():
        assert (rendered.width, rendered.height) == (general[name].width, general[name].height)
        assert psnr(decoded(rendered.path), decoded(general[name].path)) >= 35, name


def test_a_noisy_photo_outgrows_the_first_output_buffer(tmp_path: Path) -> None:
    source = tmp_path / "in.jpg"
    Image.effect_noise((900, 700), 90).convert("RGB").save(source, "JPEG", quality=98)
    made = onepass.decode_once(source, quality=90, shrink=2, optimize_coding=False)
    assert made is not None
    assert len(made.jpeg) > 900 * 700 / 8 + 65536  # past the first guess: the buffer grew
    (tmp_path / "out.jpg").write_bytes(made.jpeg)
    assert psnr(decoded(tmp_path / "out.jpg"), decoded(source)) >= 30
