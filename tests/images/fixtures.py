"""Test images, made at test time, mostly with Pillow so the code under test (libvips) is
not also the one that wrote its inputs. Small sizes keep the suite fast."""

from __future__ import annotations

import io
import random
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import pyvips
from PIL import Image, ImageCms, ImageDraw

Maker = Callable[[Path], Path]
"""A fixture function: writes its image at the path given and returns it."""

RED = (255, 0, 0)
GREEN = (0, 255, 0)
BLUE = (0, 0, 255)

XMP = (
    b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
    b'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"/></x:xmpmeta>'
)
COMMENT = b"taken at home"


def jpeg(path: Path, size: tuple[int, int] = (400, 300), colour: tuple[int, ...] = RED) -> Path:
    Image.new("RGB", size, colour).save(path, "JPEG", quality=95)
    return path


def columns(path: Path, size: tuple[int, int], colours: list[tuple[int, int, int]]) -> Path:
    """Equal vertical stripes, left to right, as a JPEG (PNG when the name says so)."""
    image = Image.new("RGB", size)
    draw = ImageDraw.Draw(image)
    stripe = size[0] // len(colours)
    for i, colour in enumerate(colours):
        draw.rectangle((i * stripe, 0, (i + 1) * stripe - 1, size[1] - 1), fill=colour)
    image.save(path, quality=95)
    return path


def exif_rotated(path: Path, size: tuple[int, int] = (400, 300)) -> Path:
    """Stored landscape with orientation 6 (display turned 90 degrees clockwise): the
    stored left half (red) is the displayed top, the right half (blue) the bottom.
    Carries GPS, a camera make, XMP and a comment that must not reach any rendition."""
    image = Image.new("RGB", size, BLUE)
    ImageDraw.Draw(image).rectangle((0, 0, size[0] // 2 - 1, size[1] - 1), fill=RED)
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation
    exif[0x010F] = "ExampleCam"  # Make
    exif[0x8825] = {  # GPS IFD
        1: "N",
        2: (52.0, 22.0, 12.0),
        3: "E",
        4: (4.0, 53.0, 30.0),
    }
    image.save(path, "JPEG", quality=95, exif=exif.tobytes(), xmp=XMP, comment=COMMENT)
    return path


def cmyk_jpeg(path: Path) -> Path:
    """Full magenta and yellow ink, no black: a red on screen."""
    Image.new("CMYK", (300, 200), (0, 255, 255, 0)).save(path, "JPEG", quality=95)
    return path


def rgb16_png(path: Path, colour: tuple[int, int, int], size: tuple[int, int] = (300, 200)) -> Path:
    """A 16-bit-per-channel RGB PNG, written by hand (Pillow writes 16-bit grey only)."""
    width, height = size
    row = b"\x00" + struct.pack(">3H", *colour) * width  # filter byte 0, then samples
    ihdr = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    return _write_png(path, ihdr, zlib.compress(row * height))


def huge_declared_png(path: Path, width: int = 100_000, height: int = 100_000) -> Path:
    """A few dozen bytes whose header declares width x height: a decompression bomb."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return _write_png(path, ihdr, zlib.compress(b"\x00" * 64))


def _write_png(path: Path, ihdr: bytes, idat: bytes) -> Path:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )
    return path


def alpha_png(path: Path) -> Path:
    """300x200: the left 100 columns fully transparent (black underneath), the rest opaque red."""
    image = Image.new("RGBA", (300, 200), (*RED, 255))
    ImageDraw.Draw(image).rectangle((0, 0, 99, 199), fill=(0, 0, 0, 0))
    image.save(path, "PNG")
    return path


def animated_gif(path: Path) -> Path:
    """Three 200x150 frames: red, then green, then blue."""
    frames = [Image.new("RGB", (200, 150), colour) for colour in (RED, GREEN, BLUE)]
    frames[0].save(path, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    return path


def display_p3_profile() -> bytes:
    """libvips' built-in Display P3 profile (no P3 profile ships with Pillow)."""
    pixel = pyvips.Image.black(1, 1, bands=3).copy(interpretation="srgb").cast("uchar")
    profile: bytes = pixel.icc_transform("p3", input_profile="srgb").get("icc-profile-data")
    return profile


def srgb_profile() -> bytes:
    return bytes(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())


def v2_profile(description: str) -> bytes:
    """The skeleton of an ICC v2 profile (header, and a `desc` tag naming it), the layout
    most camera and editor profiles use. Enough to be named; not to transform with."""
    text = description.encode("ascii") + b"\0"
    desc = b"desc" + bytes(4) + struct.pack(">I", len(text)) + text + bytes(79)
    size = 128 + 16 + len(desc)
    header = struct.pack(">I4sI4s4s4s", size, b"none", 0x02100000, b"mntr", b"RGB ", b"XYZ ")
    header = header.ljust(36, b"\0") + b"acsp"
    return header.ljust(128, b"\0") + struct.pack(">I4sII", 1, b"desc", 144, len(desc)) + desc


def tagged_jpeg(
    path: Path, colour: tuple[int, int, int], profile: bytes, size: tuple[int, int] = (300, 200)
) -> Path:
    Image.new("RGB", size, colour).save(path, "JPEG", quality=98, icc_profile=profile)
    return path


def p3_to_srgb(colour: tuple[int, int, int]) -> tuple[int, ...]:
    """Where a Display P3 colour lands in sRGB, computed by LittleCMS through Pillow
    (relative colorimetric, libvips' default intent)."""
    transform = ImageCms.buildTransform(
        ImageCms.ImageCmsProfile(io.BytesIO(display_p3_profile())),
        ImageCms.createProfile("sRGB"),
        "RGB",
        "RGB",
        renderingIntent=ImageCms.Intent.RELATIVE_COLORIMETRIC,
    )
    converted = ImageCms.applyTransform(Image.new("RGB", (1, 1), colour), transform)
    assert converted is not None
    return tuple(converted.getpixel((0, 0)))  # type: ignore[arg-type]


def truncated_jpeg(path: Path) -> Path:
    """The first half of a 600x400 JPEG: the header is intact, the scan stops midway."""
    data = io.BytesIO()
    Image.effect_noise((600, 400), 60).convert("RGB").save(data, "JPEG", quality=90)
    path.write_bytes(data.getvalue()[: len(data.getvalue()) // 2])
    return path


def damaged_png(path: Path) -> Path:
    """A PNG whose image data has one byte flipped: its checksum no longer matches."""
    data = io.BytesIO()
    Image.effect_noise((300, 200), 60).convert("RGB").save(data, "PNG")
    damaged = bytearray(data.getvalue())
    damaged[damaged.index(b"IDAT") + 200] ^= 0xFF
    path.write_bytes(bytes(damaged))
    return path


def random_bytes(path: Path, size: int = 4096) -> Path:
    path.write_bytes(random.Random(7).randbytes(size))
    return path


def pdf(path: Path) -> Path:
    path.write_bytes(
        b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n"
        b"2 0 obj << /Type /Pages /Kids [] /Count 0 >> endobj\n"
        b"trailer << /Root 1 0 R >>\n%%EOF\n"
    )
    return path


def encoded(
    fmt: str, size: tuple[int, int] = (240, 160), colour: tuple[int, int, int] = GREEN
) -> bytes:
    """A flat image in one of Pillow's formats ("JPEG", "PNG", "WEBP", "GIF", "TIFF", "AVIF")."""
    data = io.BytesIO()
    Image.new("RGB", size, colour).save(data, fmt)
    return data.getvalue()


def heic_branded(path: Path) -> Path:
    """An HEIF container whose brands say HEIC (HEVC-coded), built from an AVIF by renaming
    its brands: enough to be told apart from AVIF by the bytes."""
    data = encoded("AVIF")
    size = int.from_bytes(data[:4], "big")
    ftyp = data[:size].replace(b"avif", b"heic")
    path.write_bytes(ftyp + data[size:])
    return path
