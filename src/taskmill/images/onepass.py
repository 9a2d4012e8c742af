"""One decode of a JPEG for two renditions: the full-size one and a reduced base.

libvips decodes a JPEG once per output pipeline and cannot feed one decode to two, so the
default renditions (a full-size `compressed` plus smaller ones) cost two decodes, each
paying the entropy decoding of the whole file. The C extension `_jpeg_onepass` decodes once,
strip by strip in libjpeg's raw YCbCr mode, and sends each strip both to a JPEG encoder and
into a box-filter reduction; it holds a few strips, never the image. 12 MP: 68 ms against
99 ms for libvips' two decodes (docs/benchmarks.md).

An EXIF rotation or flip is applied: the full-size output is kept whole at 4:2:0 until the
decode ends (36 MB at 24 MP, half of what libvips holds to turn an RGB image), and the
reduced copy is turned after the reduction.

It takes only plain files: 8-bit YCbCr with common chroma sampling. Anything else, any
libjpeg warning (damaged data), or an install built without libjpeg's headers: `None`, and
the caller takes the general libvips path, which then decides what the file is worth. So
does every JPEG with TASKMILL_JPEG_ONE_PASS=false (`render(one_pass=False)`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyvips

log = logging.getLogger("taskmill.images")


def _extension() -> Callable[[Any, int, int, bool, int], tuple[bytes, bytes, int, int]] | None:
    try:
        from taskmill.images._jpeg_onepass import reencode_and_reduce
    except ImportError:  # installed without libjpeg's headers: the extension is optional
        return None
    return reencode_and_reduce


reencode_and_reduce = _extension()
AVAILABLE = reencode_and_reduce is not None


@dataclass(frozen=True, slots=True)
class OnePass:
    """The full-size image, encoded, and the reduced copy (lazy pyvips image, sRGB)."""

    jpeg: bytes
    reduced: Any


def decode_once(
    source: Path, *, quality: int, shrink: int, optimize_coding: bool, orientation: int = 1
) -> OnePass | None:
    """Re-encode `source` at full size as a baseline 4:2:0 JPEG of `quality` with no
    metadata, and reduce it by `shrink` (box filter), from one decode; both turned upright
    by the EXIF `orientation`. `None` when the file is not one this path takes."""
    if reencode_and_reduce is None:
        return None
    try:
        # Read, not mapped: a file cut short under a mapping kills the process (SIGBUS).
        data = source.read_bytes()
        jpeg, rgb, width, height = reencode_and_reduce(
            data, quality, shrink, optimize_coding, orientation
        )
    except (ValueError, OSError) as exc:
        log.debug("one-pass JPEG path declined %s: %s", source, exc)
        return None
    reduced = pyvips.Image.new_from_memory(rgb, width, height, 3, "uchar")
    reduced = reduced.copy(interpretation="srgb")
    if orientation != 1:
        reduced.set_type(pyvips.GValue.gint_type, "orientation", orientation)
        reduced = reduced.autorot()
    return OnePass(jpeg, reduced)
