"""Renditions from an original: decode as little as possible, encode deterministically.

How the work is split (measured on a 24 MP JPEG, one libvips thread):
- Renditions smaller than the original share one decode, with shrink-on-load (JPEG DCT
  scaling at 1/2, 1/4 or 1/8, WebP/HEIF equivalents through `pyvips.Image.thumbnail`),
  brought to the largest of them; the others are resized from that in-memory copy.
- Every other rendition (the full-size `compressed`, or a box larger than the image) is
  its own streaming pipeline: decoded in sequential strips and encoded as it goes, so the
  full image is never held in memory unless EXIF orientation forces a rotation.
A decode costs at least the entropy decoding of the whole file whatever the shrink, so
what saves time is the number of decodes: two for the default renditions, not three; and
one for a plain JPEG, where `onepass` makes the full-size JPEG rendition and the
shared reduced copy from a single decode.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyvips

from taskmill.images import onepass
from taskmill.images.errors import CorruptImage, UnsupportedImage
from taskmill.images.formats import (
    ImageInfo,
    clear_vips_errors,
    extension,
    format_name,
    read_header,
    vips_reason,
)
from taskmill.images.renditions import RenditionSpec

# libvips caches recent operations, including the loaders `thumbnail` opens internally,
# with their decode buffers: +28 MiB peak at 24 MP, and it grows over a worker's life.
# No two renditions here ever repeat an operation, so the cache only costs memory.
pyvips.cache_set_max(0)

# "no limit" for one side of thumbnail's target box (libvips' VIPS_MAX_COORD)
_UNBOUNDED = 10_000_000

# Optimised Huffman tables shrink small JPEGs by 10-30 %, but libjpeg then buffers every
# DCT coefficient of the image: +130 MiB at 24 MP. Only worth it for small outputs.
_OPTIMIZE_CODING_MAX_PIXELS = 2_000_000

# Loader strictness: truncated or damaged data fails instead of decoding to grey.
# Not "warning": libjpeg warns about JPEGs that decode fine (extraneous bytes before a
# marker, common from some phone firmware), and those must not fail.
_FAIL_ON = "error"
_LOADER_OPTIONS = frozenset({"fail_on"})  # of `_load_options`: the rest are thumbnail's


@dataclass(frozen=True, slots=True)
class Encoded:
    """A rendition's file content, made before `_save`."""

    data: bytes
    width: int
    height: int


@dataclass(frozen=True, slots=True)
class Rendered:
    """One file `render` wrote."""

    name: str
    path: Path
    format: str
    width: int
    height: int
    bytes: int


def render(
    source: Path,
    specs: Mapping[str, RenditionSpec],
    out_dir: Path,
    *,
    max_pixels: int,
    avif_effort: int = 2,
    one_pass: bool = True,
) -> dict[str, Rendered]:
    """Write one file per spec into `out_dir` as `{name}.{ext}` and say what was written.

    Outputs are upright (EXIF orientation applied), 8-bit sRGB (embedded ICC profiles
    converted, CMYK and 16-bit inputs too), the first frame of an animation, alpha
    flattened on white for JPEG and kept otherwise, with no metadata (EXIF, GPS, XMP,
    comments, ICC). The same input and specs always give byte-identical files, and each
    file is replaced atomically, so re-running after a failure is safe.

    `one_pass`: let a plain JPEG be decoded once for all renditions (`onepass`); without
    it, or without the extension, libvips decodes it twice.

    Raises UnsupportedImage, UnreadableImage or ImageTooLarge as `probe` does (checked
    before any pixel is decoded), CorruptImage when decoding fails part-way.
    """
    info, header = read_header(source, max_pixels=max_pixels)
    load = _load_options(header)
    out_dir.mkdir(parents=True, exist_ok=True)
    clear_vips_errors()
    try:
        images = _build(source, info, specs, load, one_pass=one_pass)
        return {
            name: _save(image, name, specs[name], out_dir, avif_effort)
            for name, image in images.items()
        }
    except pyvips.Error as error:
        reason = vips_reason(error)
        if "has not been built in" in reason:  # a codec this libvips lacks (HEVC)
            raise UnsupportedImage(f"cannot decode this image: {reason}") from error
        raise CorruptImage(
            f"the {format_name(info.format)} data is damaged or truncated: {reason}"
        ) from error


def _build(
    source: Path,
    info: ImageInfo,
    specs: Mapping[str, RenditionSpec],
    load: dict[str, Any],
    *,
    one_pass: bool,
) -> dict[str, Any]:
    """Per spec, in the order of `specs`: a lazy pyvips image, or the Encoded file."""
    width, height = info.width, info.height
    scales = {name: _scale(spec, width, height) for name, spec in specs.items()}
    reduced = [name for name, scale in scales.items() if scale < 1]
    images: dict[str, Any] = {}
    if reduced:
        top = max(scales[name] for name in reduced)
        # Upright box; thumbnail swaps it itself for an EXIF-rotated image.
        box = max(1, round(width * top)), max(1, round(height * top))
        full = _one_pass_rendition(info, specs, scales, load) if one_pass else None
        base, encoded = _decode_reduced(source, info, _dct_shrink(top), box, load, full, specs)
        images.update(encoded)
        base = base.copy_memory()  # decoded once, read by every reduced rendition
        images.update({name: _fit(base, specs[name]) for name in reduced})
    for name, spec in specs.items():
        if name not in images:
            # Full size, streamed: nothing to shrink, so no shared decode to gain from.
            full_size = pyvips.Image.thumbnail(
                str(source), _UNBOUNDED, height=_UNBOUNDED, size="down", **load
            )
            images[name] = full_size if spec.fit == "inside" else _cover(full_size, spec)
    return {name: images[name] for name in specs}


def _one_pass_rendition(
    info: ImageInfo,
    specs: Mapping[str, RenditionSpec],
    scales: Mapping[str, float],
    load: Mapping[str, Any],
) -> str | None:
    """The full-size JPEG rendition `onepass` can make along with the reduced copy, if the
    original is a JPEG in sRGB or untagged (the one pass converts no colours)."""
    if not onepass.AVAILABLE or info.format != "jpeg" or "output_profile" in load:
        return None
    return next(
        (
            name
            for name, spec in specs.items()
            if scales[name] >= 1 and spec.fit == "inside" and spec.format == "jpeg"
        ),
        None,
    )


def _decode_reduced(
    source: Path,
    info: ImageInfo,
    shrink: int,
    box: tuple[int, int],
    load: dict[str, Any],
    full: str | None,
    specs: Mapping[str, RenditionSpec],
) -> tuple[Any, dict[str, Encoded]]:
    """The image brought down to fit `box`, and the full-size rendition `full` if the one
    pass made it along the way."""
    box_w, box_h = box
    if full is not None and shrink > 1:
        quality = specs[full].quality
        made = onepass.decode_once(
            source, quality=quality, shrink=shrink,
            optimize_coding=_optimize_coding(info.width * info.height),
            orientation=info.orientation,
        )  # fmt: skip
        if made is not None:
            base = made.reduced.thumbnail_image(box_w, height=box_h, size="down")
            return base, {full: Encoded(made.jpeg, info.width, info.height)}
    return _reduced_base(source, info.format, shrink, box_w, box_h, load), {}


def _dct_shrink(scale: float) -> int:
    """The largest JPEG DCT scaling (1/8, 1/4, 1/2) that still leaves `scale` to do."""
    return max((k for k in (8, 4, 2, 1) if k * scale <= 1), default=1)


def _reduced_base(
    source: Path, fmt: str, shrink: int, box_w: int, box_h: int, load: dict[str, Any]
) -> Any:
    """The image brought down to fit the box, decoded at the smallest size that allows.

    libvips' `thumbnail` keeps a factor of two in reserve for its final resize, so for a
    24 MP JPEG bound for 1024 px it decodes at 1/2, through libjpeg's plain-C scaled IDCT.
    Decoding at 1/4 (the DCT scaling already filters like a resize would) and resizing
    the remaining factor of ~1.5 with Lanczos 3 costs ~20 % less, for renditions
    that cannot be told apart at their size; sharp does the same by default."""
    if fmt != "jpeg" or shrink == 1:
        return pyvips.Image.thumbnail(str(source), box_w, height=box_h, size="down", **load)
    loader_options = {k: v for k, v in load.items() if k in _LOADER_OPTIONS}
    colour_options = {k: v for k, v in load.items() if k not in _LOADER_OPTIONS}
    decoded = pyvips.Image.jpegload(
        str(source), shrink=shrink, access="sequential", **loader_options
    )
    return decoded.thumbnail_image(box_w, height=box_h, size="down", **colour_options)


def _scale(spec: RenditionSpec, width: int, height: int) -> float:
    """The factor the upright original is scaled by for this spec."""
    sx = spec.width / width if spec.width else float("inf")
    sy = spec.height / height if spec.height else float("inf")
    if spec.fit == "cover":
        return max(sx, sy)
    return min(sx, sy, 1.0)


def _fit(image: Any, spec: RenditionSpec) -> Any:
    """`image` (upright, sRGB, no larger than needed) brought to the spec's box."""
    if spec.fit == "inside":
        return image.thumbnail_image(
            spec.width or _UNBOUNDED, height=spec.height or _UNBOUNDED, size="down"
        )
    return _cover(image, spec)


def _cover(image: Any, spec: RenditionSpec) -> Any:
    """`image` scaled to fill the spec's box exactly, centre kept."""
    assert spec.width and spec.height  # a cover spec always has both (validated)
    # Crop to the target's aspect ratio before scaling: scaling a 1x5000 strip to cover
    # 300x300 first would build a 300x1,500,000 intermediate.
    target = spec.width / spec.height
    crop_w = min(image.width, max(1, round(image.height * target)))
    crop_h = min(image.height, max(1, round(image.width / target)))
    image = image.crop((image.width - crop_w) // 2, (image.height - crop_h) // 2, crop_w, crop_h)
    # crop="centre" trims the last pixel of rounding so the size is exact.
    return image.thumbnail_image(spec.width, height=spec.height, size="both", crop="centre")


def _load_options(header: Any) -> dict[str, Any]:
    """Options for `thumbnail`'s loader and colour handling, from the header alone."""
    options: dict[str, Any] = {"fail_on": _FAIL_ON}
    if header.get_typeof("icc-profile-data") and not _is_srgb(header):
        # Only with a profile: transforming an untagged image costs ~3 s at 24 MP.
        options["output_profile"] = "srgb"
    return options


def _is_srgb(header: Any) -> bool:
    """An RGB image tagged with an sRGB profile is sRGB already: skip the ~120 ms
    transform (24 MP) that would map it onto itself."""
    if header.interpretation not in ("srgb", "rgb16") or header.bands not in (3, 4):
        return False
    return _profile_description(header.get("icc-profile-data")).startswith("sRGB")


def _profile_description(icc: bytes) -> str:
    """The ICC profile's `desc` tag text (v2 `desc` or v4 `mluc`), or "" if unreadable."""
    try:
        (count,) = struct.unpack_from(">I", icc, 128)
        for i in range(count):
            sig, offset, size = struct.unpack_from(">4sII", icc, 132 + 12 * i)
            if sig == b"desc":
                return _tag_text(icc[offset : offset + size])
    except (struct.error, UnicodeDecodeError):
        pass
    return ""


def _tag_text(tag: bytes) -> str:
    if tag[:4] == b"desc":  # v2: ASCII length, then the text and its NUL
        (length,) = struct.unpack_from(">I", tag, 8)
        return tag[12 : 12 + length].rstrip(b"\0").decode("ascii")
    if tag[:4] == b"mluc":  # v4: the first record, UTF-16BE
        length, offset = struct.unpack_from(">II", tag, 20)
        return tag[offset : offset + length].decode("utf-16-be")
    return ""


def _save(image: Any, name: str, spec: RenditionSpec, out_dir: Path, avif_effort: int) -> Rendered:
    """Encode to bytes first: a libvips error is then always about the image, while
    a disk error surfaces as OSError. The file appears under its name only complete."""
    encoded = image if isinstance(image, Encoded) else _encode(image, spec, avif_effort)
    path = out_dir / f"{name}.{extension(spec.format)}"
    partial = path.with_name(f".{path.name}.partial")
    partial.write_bytes(encoded.data)
    os.replace(partial, path)
    return Rendered(name, path, spec.format, encoded.width, encoded.height, len(encoded.data))


def _optimize_coding(pixels: int) -> bool:
    return pixels <= _OPTIMIZE_CODING_MAX_PIXELS


def _encode(image: Any, spec: RenditionSpec, avif_effort: int) -> Encoded:
    if spec.format == "jpeg" and image.hasalpha():
        image = image.flatten(background=[255])
    # keep="none": savers copy EXIF, GPS, XMP and comments by default.
    if spec.format == "jpeg":
        small = _optimize_coding(image.width * image.height)
        data = image.jpegsave_buffer(Q=spec.quality, keep="none", optimize_coding=small)
    elif spec.format == "webp":
        data = image.webpsave_buffer(Q=spec.quality, keep="none")
    elif spec.format == "png":
        data = image.pngsave_buffer(keep="none")
    else:
        data = image.heifsave_buffer(
            compression="av1", Q=spec.quality, effort=avif_effort, bitdepth=8, keep="none"
        )
    return Encoded(bytes(data), image.width, image.height)
