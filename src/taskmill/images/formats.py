"""Which image formats taskmill reads, told from the bytes, and what a file's header declares.

Nothing here decodes pixels: `probe` reads the header only, so it is cheap enough for the
upload path even when a tiny file declares a gigapixel image.
"""

from __future__ import annotations

import functools
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyvips

from taskmill.images.errors import ImageTooLarge, UnreadableImage, UnsupportedImage

# format -> (Content-Type, file extension, name for messages)
_FORMATS: dict[str, tuple[str, str, str]] = {
    "jpeg": ("image/jpeg", "jpg", "JPEG"),
    "png": ("image/png", "png", "PNG"),
    "webp": ("image/webp", "webp", "WebP"),
    "gif": ("image/gif", "gif", "GIF"),
    "tiff": ("image/tiff", "tiff", "TIFF"),
    "heif": ("image/heic", "heic", "HEIC"),
    "avif": ("image/avif", "avif", "AVIF"),
}

_LOADERS = {
    "jpeg": "jpegload",
    "png": "pngload",
    "webp": "webpload",
    "gif": "gifload",
    "tiff": "tiffload",
    "heif": "heifload",
    "avif": "heifload",
}

# HEIF brands: AV1-coded (AVIF) and HEVC-coded (HEIC). A bare `mif1` file with neither
# named is treated as HEIC, the common case from phones.
_AVIF_BRANDS = frozenset({b"avif", b"avis"})
_HEIF_BRANDS = frozenset(
    {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs", b"mif1", b"msf1"}
)

# The libheif inside pyvips-binary has AV1 codecs only: a HEIC header reads, but decoding
# its pixels fails ("Support for this compression format has not been built in: HEVC").
# Refusing HEIC at upload beats accepting it and failing in the job.
_UNDECODABLE = frozenset({"heif"})

_MAGIC: tuple[tuple[str, tuple[bytes, ...]], ...] = (
    ("jpeg", (b"\xff\xd8\xff",)),
    ("png", (b"\x89PNG\r\n\x1a\n",)),
    ("gif", (b"GIF87a", b"GIF89a")),
    ("tiff", (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")),  # classic and BigTIFF
)

SNIFF_BYTES = 64
"""How many leading bytes `sniff` needs."""


def sniff(head: bytes) -> str | None:
    """The image format of a file from its first bytes (`SNIFF_BYTES` are enough).

    Returns one of "jpeg", "png", "webp", "gif", "tiff", "heif" (HEVC-coded, HEIC),
    "avif", or None for anything else (PDF, SVG, random or empty bytes). The file name
    and declared Content-Type are never consulted.
    """
    for fmt, prefixes in _MAGIC:
        if head.startswith(prefixes):
            return fmt
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[4:8] == b"ftyp":
        return _sniff_ftyp(head)
    return None


def _sniff_ftyp(head: bytes) -> str | None:
    """AVIF or HEIC from an ISO-BMFF `ftyp` box: its major and compatible brands."""
    (box_size,) = struct.unpack(">I", head[:4])
    body = head[8 : min(box_size, len(head))]
    brands = {body[i : i + 4] for i in range(0, len(body) - 3, 4)}
    brands.discard(body[4:8])  # minor version, not a brand
    if brands & _AVIF_BRANDS:
        return "avif"
    if brands & _HEIF_BRANDS:
        return "heif"
    return None


@functools.cache
def loadable_formats() -> frozenset[str]:
    """The sniffed formats this libvips build can decode, not just recognise."""
    present = {fmt for fmt, op in _LOADERS.items() if pyvips.type_find("VipsOperation", op)}
    return frozenset(present - _UNDECODABLE)


@dataclass(frozen=True, slots=True)
class ImageInfo:
    """What a file's header declares. Width and height are as displayed: EXIF orientation
    applied, first frame of an animation or first page of a TIFF."""

    format: str
    width: int
    height: int
    pages: int
    orientation: int = 1  # EXIF, 1-8: how the stored pixels turn to be displayed

    @property
    def content_type(self) -> str:
        return content_type(self.format)

    @property
    def extension(self) -> str:
        return extension(self.format)


def content_type(fmt: str) -> str:
    """A format's Content-Type: "image/jpeg", ..."""
    return _FORMATS[fmt][0]


def extension(fmt: str) -> str:
    """A format's file extension, without the dot: "jpg", ..."""
    return _FORMATS[fmt][1]


def format_name(fmt: str) -> str:
    """How messages name a format: "JPEG", "WebP", ..."""
    return _FORMATS[fmt][2]


def probe(path: str | Path, *, max_pixels: int) -> ImageInfo:
    """Sniff the file and read its header, without decoding any pixels.

    Raises UnreadableImage for an empty file or a header libvips cannot parse,
    UnsupportedImage for bytes that are not an image format this build decodes, and
    ImageTooLarge when the first frame has more than `max_pixels` pixels.
    """
    info, _ = read_header(path, max_pixels=max_pixels)
    return info


def read_header(path: str | Path, *, max_pixels: int) -> tuple[ImageInfo, Any]:
    """`probe`, also returning the lazily-opened pyvips image for its metadata."""
    with Path(path).open("rb") as file:
        head = file.read(SNIFF_BYTES)
    if not head:
        raise UnreadableImage("the file is empty")
    fmt = sniff(head)
    if fmt is None:
        raise UnsupportedImage(
            "not an image taskmill reads: expected JPEG, PNG, WebP, GIF, TIFF or AVIF"
        )
    if fmt not in loadable_formats():
        raise UnsupportedImage(
            f"{format_name(fmt)} images cannot be decoded on this server; "
            "convert to JPEG, PNG, WebP or AVIF"
        )
    loader = getattr(pyvips.Image, _LOADERS[fmt])
    clear_vips_errors()
    try:
        # revalidate: a retry may bring new bytes under the same path; never reuse a
        # header cached by libvips' operation cache.
        header = loader(str(path), access="sequential", revalidate=True)
    except pyvips.Error as error:
        raise UnreadableImage(
            f"the {format_name(fmt)} header cannot be read: {vips_reason(error)}"
        ) from error
    width, height = header.width, header.height
    if width * height > max_pixels:
        raise ImageTooLarge(
            f"the image is {width}x{height} ({width * height:,} pixels); "
            f"the limit is {max_pixels:,} pixels"
        )
    orientation = _orientation(header)
    if orientation >= 5:  # 5..8 turn the image a quarter
        width, height = height, width
    pages = header.get("n-pages") if header.get_typeof("n-pages") else 1
    return ImageInfo(fmt, width, height, pages, orientation), header


def _orientation(header: Any) -> int:
    value = header.get("orientation") if header.get_typeof("orientation") else 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


# libheif's "bad seek" lines are it probing the file, not the cause; "(2.100)" is its
# error code; "load error" repeats what the line before says.
_NOISE = re.compile(r"bad seek|\(\d+\.\d+\)$|load error$")


def clear_vips_errors() -> None:
    """Empty libvips' process-wide error log. Successful calls leave lines in it too
    (libheif's harmless "bad seek to 1024" probes), and the next pyvips.Error would
    report them as its cause."""
    pyvips.vips_lib.vips_error_clear()


def vips_reason(error: Any) -> str:
    """The useful lines of a libvips error, without the call chain or loader prefixes."""
    lines: list[str] = []
    for raw in str(getattr(error, "detail", "") or error).splitlines():
        line = raw.strip()
        if not line or line.startswith(("unable to call", "vips_mapfile", "system error")):
            continue
        prefix, sep, rest = line.partition(": ")
        if sep and " " not in prefix:  # "VipsJpeg: ...", "heif: ...", "/path/x.avif: ..."
            line = rest
        if line not in lines and not _NOISE.match(line):
            lines.append(line)
    return "; ".join(lines[:2]) or "unknown libvips error"
