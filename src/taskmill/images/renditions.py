"""What each rendition is: its box, fit, format and quality; defaults and their overrides.

Overrides come as JSON objects keyed by rendition name, e.g.
`{"resized": {"width": 800, "format": "webp"}, "thumbnail": {"quality": 70}}`. They merge
field by field: defaults, then the server's TASKMILL_RENDITIONS, then the upload's own.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal, cast

from taskmill.errors import ValidationError

Fit = Literal["inside", "cover"]
OutputFormat = Literal["jpeg", "webp", "png", "avif"]

FITS: tuple[Fit, ...] = ("inside", "cover")
OUTPUT_FORMATS: tuple[OutputFormat, ...] = ("jpeg", "webp", "png", "avif")
MAX_SIDE = 16384
FIELDS = ("width", "height", "fit", "format", "quality")


@dataclass(frozen=True, slots=True)
class RenditionSpec:
    """One derived image.

    `inside` fits the image within width x height and never enlarges it; a side left
    None is unconstrained, so None x None keeps the original size. `cover` fills
    width x height exactly, cropping the centre (both sides required). `quality` (1-100)
    drives JPEG, WebP and AVIF; PNG is lossless and ignores it.
    """

    width: int | None
    height: int | None
    fit: Fit
    format: OutputFormat
    quality: int


RENDITION_NAMES = ("resized", "compressed", "thumbnail")

DEFAULT_RENDITIONS: Mapping[str, RenditionSpec] = MappingProxyType(
    {
        "resized": RenditionSpec(1024, 1024, "inside", "jpeg", 85),
        "compressed": RenditionSpec(None, None, "inside", "jpeg", 60),
        "thumbnail": RenditionSpec(300, 300, "cover", "jpeg", 80),
    }
)


def resolve_renditions(
    config_json: str | None, upload_json: str | None
) -> dict[str, RenditionSpec]:
    """The renditions to make: defaults, overridden by config, overridden by the upload.

    Each argument is None (no overrides) or a JSON object of partial specs. Raises
    ValidationError naming the source and the field at fault.
    """
    specs = dict(DEFAULT_RENDITIONS)
    for source, text in (("TASKMILL_RENDITIONS", config_json), ("renditions", upload_json)):
        if text is None:
            continue
        for name, fields in _parse_by_name(text, source).items():
            merged = {**dataclasses.asdict(specs[name]), **fields}
            specs[name] = _build(merged, f"{source}: {name}")
    return specs


def renditions_to_json(specs: Mapping[str, RenditionSpec]) -> str:
    """Complete specs as compact JSON with a stable key order (stored with the image)."""
    return json.dumps(
        {name: dataclasses.asdict(spec) for name, spec in specs.items()},
        sort_keys=True,
        separators=(",", ":"),
    )


def renditions_from_json(text: str) -> dict[str, RenditionSpec]:
    """The inverse of `renditions_to_json`; every field of every spec is required."""
    specs = {}
    for name, fields in _parse_by_name(text, "renditions JSON").items():
        where = f"renditions JSON: {name}"
        if missing := [f for f in FIELDS if f not in fields]:
            raise ValidationError(f"{where}: missing {', '.join(missing)}")
        specs[name] = _build(fields, where)
    return specs


def _parse_by_name(text: str, source: str) -> dict[str, dict[str, Any]]:
    """A JSON object of {rendition name: object of known fields}, checked shallowly."""
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, TypeError) as error:
        raise ValidationError(f"{source}: not valid JSON ({error})") from error
    if not isinstance(data, dict):
        raise ValidationError(f"{source}: expected a JSON object keyed by rendition name")
    for name, fields in data.items():
        if name not in RENDITION_NAMES:
            raise ValidationError(
                f"{source}: unknown rendition {name!r}; expected {_one_of(RENDITION_NAMES)}"
            )
        if not isinstance(fields, dict):
            raise ValidationError(f"{source}: {name} must be a JSON object of fields")
        if unknown := [f for f in fields if f not in FIELDS]:
            raise ValidationError(
                f"{source}: {name}: unknown field {unknown[0]!r}; expected {_one_of(FIELDS)}"
            )
    return data


def _build(fields: Mapping[str, Any], where: str) -> RenditionSpec:
    width = _side(fields["width"], f"{where}.width")
    height = _side(fields["height"], f"{where}.height")
    fit = _choice(fields["fit"], FITS, f"{where}.fit")
    if fit == "cover" and (width is None or height is None):
        raise ValidationError(f"{where}: fit 'cover' needs both width and height")
    quality = fields["quality"]
    if not _is_int(quality) or not 1 <= quality <= 100:
        raise ValidationError(f"{where}.quality must be an integer from 1 to 100, got {quality!r}")
    return RenditionSpec(
        width=width,
        height=height,
        fit=cast(Fit, fit),
        format=cast(OutputFormat, _choice(fields["format"], OUTPUT_FORMATS, f"{where}.format")),
        quality=quality,
    )


def _side(value: Any, where: str) -> int | None:
    if value is None or (_is_int(value) and 1 <= value <= MAX_SIDE):
        return cast(int | None, value)
    raise ValidationError(f"{where} must be an integer from 1 to {MAX_SIDE} or null, got {value!r}")


def _choice(value: Any, allowed: tuple[str, ...], where: str) -> str:
    if value not in allowed:
        raise ValidationError(f"{where} must be {_one_of(allowed)}, got {value!r}")
    return cast(str, value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)  # JSON true is not 1


def _one_of(names: tuple[str, ...]) -> str:
    return ", ".join(names[:-1]) + " or " + names[-1]
