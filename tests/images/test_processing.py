"""Rendering: sizes, orientation, colour, metadata, formats, failures, determinism.

Outputs are checked by decoding them with Pillow, not with libvips, which made them.
"""

from __future__ import annotations

import io
import re
import time
from collections.abc import Mapping
from pathlib import Path

import pytest
from PIL import Image

from taskmill.images.errors import CorruptImage, ImageTooLarge, UnreadableImage, UnsupportedImage
from taskmill.images.formats import read_header
from taskmill.images.processing import Rendered, _load_options, render
from taskmill.images.renditions import DEFAULT_RENDITIONS, RenditionSpec
from tests.images import fixtures
from tests.images.fixtures import BLUE, GREEN, RED

LIMIT = 50_000_000
WHITE = (255, 255, 255)
PIL_FORMATS = {"jpeg": "JPEG", "png": "PNG", "webp": "WEBP", "avif": "AVIF"}


def run(
    source: Path, specs: Mapping[str, RenditionSpec] = DEFAULT_RENDITIONS
) -> dict[str, Rendered]:
    return render(source, specs, source.parent / f"out-{source.stem}", max_pixels=LIMIT)


def opened(rendered: Rendered) -> Image.Image:
    image = Image.open(rendered.path)
    image.load()
    return image


def at(rendered: Rendered, x: float, y: float) -> tuple[int, ...]:
    """The pixel at a fraction of the width and height."""
    image = opened(rendered)
    pixel = image.getpixel((int(x * (image.width - 1)), int(y * (image.height - 1))))
    assert isinstance(pixel, tuple)
    return pixel


def near(actual: tuple[int, ...], expected: tuple[int, ...], tolerance: int = 6) -> bool:
    return len(actual) == len(expected) and all(
        abs(a - e) <= tolerance for a, e in zip(actual, expected, strict=True)
    )


def sizes(result: Mapping[str, Rendered]) -> dict[str, tuple[int, int]]:
    return {name: (r.width, r.height) for name, r in result.items()}


def test_default_renditions_of_a_landscape_photo(tmp_path: Path) -> None:
    result = run(fixtures.jpeg(tmp_path / "photo.jpg", size=(1600, 1200)))
    assert sizes(result) == {
        "resized": (1024, 768),
        "compressed": (1600, 1200),
        "thumbnail": (300, 300),
    }
    out_dir = tmp_path / "out-photo"
    for name, rendered in result.items():
        assert rendered.name == name
        assert rendered.path == out_dir / f"{name}.jpg"
        assert rendered.format == "jpeg"
        assert rendered.bytes == rendered.path.stat().st_size
        image = opened(rendered)
        assert (image.format, image.mode, image.size) == ("JPEG", "RGB", sizes(result)[name])
        assert near(at(rendered, 0.5, 0.5), RED)
    # nothing else is left behind, no partial files
    assert sorted(p.name for p in out_dir.iterdir()) == [
        "compressed.jpg",
        "resized.jpg",
        "thumbnail.jpg",
    ]


def test_inside_never_enlarges(tmp_path: Path) -> None:
    result = run(fixtures.jpeg(tmp_path / "small.jpg", size=(400, 300)))
    assert sizes(result)["resized"] == (400, 300)
    assert sizes(result)["compressed"] == (400, 300)


def test_inside_with_one_side_fits_that_side(tmp_path: Path) -> None:
    spec = RenditionSpec(None, 100, "inside", "jpeg", 80)
    assert sizes(run(fixtures.jpeg(tmp_path / "a.jpg", size=(400, 300)), {"h": spec})) == {
        "h": (133, 100)
    }


@pytest.mark.parametrize("size", [(900, 300), (300, 900), (240, 80), (3000, 40)])
def test_cover_fills_the_box_exactly_keeping_the_centre(
    tmp_path: Path, size: tuple[int, int]
) -> None:
    # blue | green | blue stripes along the long side: the centre crop is all green
    path = fixtures.columns(tmp_path / "c.png", (max(size), min(size)), [BLUE, GREEN, BLUE])
    if size[0] < size[1]:
        Image.open(path).transpose(Image.Transpose.ROTATE_90).save(path)
    result = run(path)
    assert sizes(result)["thumbnail"] == (300, 300)
    thumbnail = result["thumbnail"]
    for x, y in [(0.02, 0.02), (0.98, 0.98), (0.5, 0.5), (0.02, 0.98)]:
        assert near(at(thumbnail, x, y), GREEN, tolerance=12), (x, y)


@pytest.mark.parametrize(
    ("size", "box"),
    [
        ((300, 500), (320, 180)),
        # sizes where scaling lands a pixel short of the box before the final trim
        ((1805, 1634), (556, 124)),
        ((167, 2884), (322, 433)),
        ((614, 49), (386, 425)),
    ],
)
def test_cover_boxes_of_any_aspect_ratio_are_exact(
    tmp_path: Path, size: tuple[int, int], box: tuple[int, int]
) -> None:
    spec = RenditionSpec(*box, "cover", "png", 80)
    result = run(fixtures.jpeg(tmp_path / "p.jpg", size=size), {"box": spec})
    assert opened(result["box"]).size == box


def test_a_long_strip_is_cropped_before_it_is_scaled(tmp_path: Path) -> None:
    # Scaled first, a 2x6000 strip would cover 300x300 as a 300x900,000 intermediate.
    source = fixtures.columns(tmp_path / "strip.png", (2, 6000), [GREEN])
    started = time.perf_counter()
    result = run(source)
    assert time.perf_counter() - started < 1.0
    assert sizes(result)["thumbnail"] == (300, 300)
    assert near(at(result["thumbnail"], 0.5, 0.5), GREEN)


@pytest.mark.parametrize(
    ("stored", "resized"),
    [
        ((400, 300), (300, 400)),  # kept
        ((1600, 1200), (768, 1024)),  # shrunk
        ((4400, 3300), (768, 1024)),  # decoded at 1/4 for the small renditions
    ],
)
def test_exif_orientation_is_applied(
    tmp_path: Path, stored: tuple[int, int], resized: tuple[int, int]
) -> None:
    result = run(fixtures.exif_rotated(tmp_path / "rotated.jpg", stored))
    assert sizes(result) == {
        "resized": resized,
        "compressed": (stored[1], stored[0]),
        "thumbnail": (300, 300),
    }
    for rendered in result.values():
        # stored left (red) is displayed on top once turned clockwise
        assert near(at(rendered, 0.5, 0.05), RED, tolerance=12), rendered.name
        assert near(at(rendered, 0.5, 0.95), BLUE, tolerance=12), rendered.name


@pytest.mark.parametrize("fmt", ["jpeg", "webp", "png", "avif"])
def test_metadata_is_stripped_from_every_output(tmp_path: Path, fmt: str) -> None:
    source = fixtures.exif_rotated(tmp_path / "gps.jpg")
    assert b"ExampleCam" in source.read_bytes()  # the fixture does carry it
    spec = RenditionSpec(200, 200, "inside", fmt, 80)  # type: ignore[arg-type]
    result = run(source, {**DEFAULT_RENDITIONS, "small": spec})
    for rendered in result.values():
        data = rendered.path.read_bytes()
        image = opened(rendered)
        assert not image.getexif(), rendered.name
        for marker in (b"Exif", b"ExampleCam", b"adobe:ns:meta", fixtures.COMMENT, b"ICC_PROFILE"):
            assert marker not in data, (rendered.name, marker)
        assert "icc_profile" not in image.info


def test_cmyk_becomes_srgb(tmp_path: Path) -> None:
    result = run(fixtures.cmyk_jpeg(tmp_path / "cmyk.jpg"))
    for rendered in result.values():
        image = opened(rendered)
        assert image.mode == "RGB"
        red, green, blue = image.getpixel((image.width // 2, image.height // 2))  # type: ignore[misc]
        assert red > 200 and green < 60 and blue < 70, (red, green, blue)


def test_16_bit_becomes_8_bit_with_the_same_colour(tmp_path: Path) -> None:
    result = run(fixtures.rgb16_png(tmp_path / "deep.png", (40000, 10000, 65535)))
    expected = (round(40000 / 257), round(10000 / 257), 255)
    for rendered in result.values():
        assert opened(rendered).mode == "RGB"
        assert near(at(rendered, 0.5, 0.5), expected, tolerance=4), rendered.name


def test_alpha_is_flattened_on_white_for_jpeg_and_kept_otherwise(tmp_path: Path) -> None:
    source = fixtures.alpha_png(tmp_path / "alpha.png")
    keep = {fmt: RenditionSpec(None, None, "inside", fmt, 90) for fmt in ("png", "webp", "avif")}
    result = run(source, {**DEFAULT_RENDITIONS, **keep})
    for name in ("resized", "compressed"):
        assert opened(result[name]).mode == "RGB"
        assert near(at(result[name], 0.1, 0.5), WHITE), name
        assert near(at(result[name], 0.9, 0.5), RED), name
    assert near(at(result["png"], 0.1, 0.5), (0, 0, 0, 0))
    assert near(at(result["png"], 0.9, 0.5), (*RED, 255))
    for name in ("webp", "avif"):
        image = opened(result[name])
        assert image.mode == "RGBA", name
        assert image.getpixel((10, 100))[3] == 0, name  # type: ignore[index]
        assert near(at(result[name], 0.9, 0.5), (*RED, 255), tolerance=10), name


def test_an_animation_gives_its_first_frame(tmp_path: Path) -> None:
    result = run(fixtures.animated_gif(tmp_path / "anim.gif"))
    assert sizes(result) == {
        "resized": (200, 150),
        "compressed": (200, 150),
        "thumbnail": (300, 300),
    }
    for rendered in result.values():
        assert near(at(rendered, 0.5, 0.5), RED), rendered.name


@pytest.mark.parametrize("size", [(300, 200), (2600, 1800)])  # the second: decoded at 1/2
def test_a_display_p3_image_is_converted_to_srgb(tmp_path: Path, size: tuple[int, int]) -> None:
    p3 = (220, 90, 40)
    expected = fixtures.p3_to_srgb(p3)
    assert max(abs(a - b) for a, b in zip(expected, p3, strict=True)) >= 20  # tells them apart
    source = fixtures.tagged_jpeg(tmp_path / "p3.jpg", p3, fixtures.display_p3_profile(), size)
    spec = {"png": RenditionSpec(None, None, "inside", "png", 90)}
    for rendered in run(source, {**DEFAULT_RENDITIONS, **spec}).values():
        assert near(at(rendered, 0.5, 0.5), expected), rendered.name
        assert "icc_profile" not in opened(rendered).info


def test_only_images_tagged_with_another_profile_are_transformed(tmp_path: Path) -> None:
    """The transform costs ~3 s at 24 MP without a profile, ~120 ms with an sRGB one."""

    def options(path: Path) -> dict[str, object]:
        return _load_options(read_header(path, max_pixels=LIMIT)[1])

    def tagged(profile: bytes) -> Path:
        return fixtures.tagged_jpeg(tmp_path / "tagged.jpg", RED, profile)

    transform = {"fail_on": "error", "output_profile": "srgb"}
    assert options(tagged(fixtures.display_p3_profile())) == transform
    assert options(tagged(fixtures.v2_profile("Adobe RGB (1998)"))) == transform
    assert options(tagged(fixtures.srgb_profile())) == {"fail_on": "error"}
    assert options(tagged(fixtures.v2_profile("sRGB IEC61966-2.1"))) == {"fail_on": "error"}
    assert options(fixtures.jpeg(tmp_path / "plain.jpg")) == {"fail_on": "error"}


@pytest.mark.parametrize("fmt", ["webp", "png", "avif"])
def test_other_output_formats_can_be_chosen(tmp_path: Path, fmt: str) -> None:
    specs = {
        name: RenditionSpec(spec.width, spec.height, spec.fit, fmt, spec.quality)  # type: ignore[arg-type]
        for name, spec in DEFAULT_RENDITIONS.items()
    }
    result = run(fixtures.jpeg(tmp_path / "photo.jpg", size=(1200, 900)), specs)
    assert sizes(result) == {
        "resized": (1024, 768),
        "compressed": (1200, 900),
        "thumbnail": (300, 300),
    }
    extension = {"webp": "webp", "png": "png", "avif": "avif"}[fmt]
    for name, rendered in result.items():
        assert rendered.path.name == f"{name}.{extension}"
        assert rendered.format == fmt
        assert opened(rendered).format == PIL_FORMATS[fmt]
        assert near(at(rendered, 0.5, 0.5)[:3], RED, tolerance=10)


@pytest.mark.parametrize("pillow_format", ["PNG", "WEBP", "GIF", "TIFF", "AVIF"])
def test_every_supported_input_format_renders(tmp_path: Path, pillow_format: str) -> None:
    source = tmp_path / "upload.bin"  # the name says nothing
    source.write_bytes(fixtures.encoded(pillow_format, size=(600, 400), colour=GREEN))
    result = run(source)
    assert sizes(result) == {
        "resized": (600, 400),
        "compressed": (600, 400),
        "thumbnail": (300, 300),
    }
    assert near(at(result["thumbnail"], 0.5, 0.5), GREEN, tolerance=10)


def test_quality_is_applied(tmp_path: Path) -> None:
    source = tmp_path / "noise.png"  # detail, so that quality shows in the size
    Image.effect_noise((400, 300), 60).convert("RGB").save(source)
    result = run(
        source,
        {
            "low": RenditionSpec(None, None, "inside", "jpeg", 30),
            "high": RenditionSpec(None, None, "inside", "jpeg", 95),
        },
    )
    assert result["low"].bytes * 2 < result["high"].bytes


@pytest.mark.parametrize("fmt", ["jpeg", "webp", "png", "avif"])
def test_rendering_is_deterministic(tmp_path: Path, fmt: str) -> None:
    source = fixtures.exif_rotated(tmp_path / "photo.jpg")
    specs = {
        "a": RenditionSpec(None, None, "inside", fmt, 70),  # type: ignore[arg-type]
        "b": RenditionSpec(150, 150, "cover", fmt, 70),  # type: ignore[arg-type]
    }
    first = render(source, specs, tmp_path / "first", max_pixels=LIMIT)
    second = render(source, specs, tmp_path / "second", max_pixels=LIMIT)
    again = render(source, specs, tmp_path / "first", max_pixels=LIMIT)  # a retry, in place
    for name in specs:
        data = first[name].path.read_bytes()
        assert data == second[name].path.read_bytes() == again[name].path.read_bytes()


def test_a_truncated_jpeg_fails_with_a_readable_error(tmp_path: Path) -> None:
    with pytest.raises(CorruptImage) as failure:
        run(fixtures.truncated_jpeg(tmp_path / "cut.jpg"))
    assert str(failure.value) == (
        "the JPEG data is damaged or truncated: premature end of JPEG image"
    )


@pytest.mark.parametrize("fmt", ["GIF", "TIFF", "AVIF"])
def test_truncated_files_of_other_formats_fail_too(tmp_path: Path, fmt: str) -> None:
    data = io.BytesIO()
    Image.effect_noise((300, 200), 60).convert("RGB").save(data, fmt)
    source = tmp_path / "cut.img"
    source.write_bytes(data.getvalue()[: len(data.getvalue()) // 2])
    with pytest.raises(CorruptImage) as failure:
        run(source)
    message = str(failure.value)
    assert re.fullmatch(rf"the {fmt} data is damaged or truncated: [A-Z][^\n]+", message)
    # the cause, without libvips' call chain or libheif's probing noise and codes
    for noise in ("unable to call", "bad seek", "load error", "(2."):
        assert noise not in message


def test_damaged_png_data_fails(tmp_path: Path) -> None:
    with pytest.raises(CorruptImage, match=r"^the PNG data is damaged or truncated: \w"):
        run(fixtures.damaged_png(tmp_path / "bad.png"))


@pytest.mark.parametrize(
    ("make", "error", "message"),
    [
        (fixtures.random_bytes, UnsupportedImage, "not an image taskmill reads"),
        (fixtures.pdf, UnsupportedImage, "not an image taskmill reads"),
        (fixtures.heic_branded, UnsupportedImage, "HEIC images cannot be decoded"),
        (fixtures.huge_declared_png, ImageTooLarge, "100000x100000"),
    ],
)
def test_what_probe_refuses_render_refuses_too(
    tmp_path: Path, make: fixtures.Maker, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        run(make(tmp_path / "upload.jpg"))


def test_an_empty_file_is_unreadable(tmp_path: Path) -> None:
    (tmp_path / "empty.jpg").touch()
    with pytest.raises(UnreadableImage, match="the file is empty"):
        run(tmp_path / "empty.jpg")
