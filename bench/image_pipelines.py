"""The two image baselines and the photo they run on, kept apart from the benchmark's own
imports (database drivers, rich) so a process measuring peak memory loads only what the
pipeline itself needs."""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

RENDITIONS = {"resized": (1024, 1024), "thumbnail": (300, 300)}


def make_photo(path: Path, width: int, height: int, orientation: int = 1) -> Path:
    """A photo-like JPEG, q90 as cameras save: smooth structure at several scales (Perlin
    noise, three octaves per channel) with sensor-like grain, so it compresses like a photo
    (a few bytes per pixel's worth of detail), neither a flat colour nor pure noise. With
    an EXIF `orientation` other than 1, stored as a phone stores a portrait: turned."""
    import pyvips

    def channel(cell: int) -> pyvips.Image:
        octaves = [(cell, 0.6), (cell // 8, 0.3), (max(2, cell // 64), 0.1)]
        return sum(pyvips.Image.perlin(width, height, cell_size=c) * w for c, w in octaves)

    image = channel(512).bandjoin([channel(384), channel(256)])
    grain = pyvips.Image.gaussnoise(width, height, sigma=6)
    photo = ((image + 1) * 127.5 + grain).cast("uchar").copy(interpretation="srgb")
    if orientation != 1:
        photo.set_type(pyvips.GValue.gint_type, "orientation", orientation)
    photo.jpegsave(str(path), Q=90)
    return path


def naive_pillow(source: str) -> int:
    """What a first version of an image service does: for each rendition, open the file,
    resize from full size, save. Returns bytes written."""
    from PIL import Image, ImageOps

    def make(name: str, image: Image.Image) -> Image.Image:
        if name == "resized":
            return ImageOps.contain(image, RENDITIONS["resized"])
        if name == "thumbnail":
            return ImageOps.fit(image, RENDITIONS["thumbnail"])
        return image

    written = 0
    for name in ("resized", "compressed", "thumbnail"):
        with Image.open(source) as original:
            buffer = io.BytesIO()
            out = make(name, original.convert("RGB"))
            out.save(buffer, "JPEG", quality=60 if name == "compressed" else 85)
            written += buffer.tell()
    return written


def bare_pipeline_libvips(source: str) -> int:
    """The bare pipeline with the one-pass JPEG path off (TASKMILL_JPEG_ONE_PASS=false, or
    installed without libjpeg's headers): libvips alone, two decodes. Returns bytes written."""
    return bare_pipeline(source, one_pass=False)


def bare_pipeline(source: str, *, one_pass: bool = True) -> int:
    """taskmill's rendering alone, into a temporary folder. Returns bytes written."""
    from taskmill.images.processing import render
    from taskmill.images.renditions import DEFAULT_RENDITIONS

    with tempfile.TemporaryDirectory() as out:
        rendered = render(
            Path(source), DEFAULT_RENDITIONS, Path(out), max_pixels=100_000_000,
            one_pass=one_pass,
        )  # fmt: skip
        return sum(r.bytes for r in rendered.values())
