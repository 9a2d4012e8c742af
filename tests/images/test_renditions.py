"""Rendition specs: the SPEC §8 defaults, overrides merged field by field, precise errors."""

from __future__ import annotations

import json

import pytest

from taskmill.errors import ValidationError
from taskmill.images.renditions import (
    DEFAULT_RENDITIONS,
    RENDITION_NAMES,
    RenditionSpec,
    renditions_from_json,
    renditions_to_json,
    resolve_renditions,
)


def test_defaults_are_the_documented_ones() -> None:
    assert tuple(DEFAULT_RENDITIONS) == RENDITION_NAMES == ("resized", "compressed", "thumbnail")
    assert DEFAULT_RENDITIONS["resized"] == RenditionSpec(1024, 1024, "inside", "jpeg", 85)
    assert DEFAULT_RENDITIONS["compressed"] == RenditionSpec(None, None, "inside", "jpeg", 60)
    assert DEFAULT_RENDITIONS["thumbnail"] == RenditionSpec(300, 300, "cover", "jpeg", 80)


def test_no_overrides_give_the_defaults() -> None:
    assert resolve_renditions(None, None) == dict(DEFAULT_RENDITIONS)
    assert resolve_renditions("{}", "{}") == dict(DEFAULT_RENDITIONS)


def test_overrides_merge_field_by_field_config_then_upload() -> None:
    config = json.dumps({"resized": {"width": 800, "format": "webp"}, "thumbnail": {"quality": 70}})
    upload = json.dumps({"resized": {"quality": 50}, "compressed": {"format": "avif"}})
    specs = resolve_renditions(config, upload)
    assert specs == {
        "resized": RenditionSpec(800, 1024, "inside", "webp", 50),
        "compressed": RenditionSpec(None, None, "inside", "avif", 60),
        "thumbnail": RenditionSpec(300, 300, "cover", "jpeg", 70),
    }


def test_the_upload_wins_over_the_config() -> None:
    specs = resolve_renditions('{"thumbnail": {"width": 200}}', '{"thumbnail": {"width": 120}}')
    assert specs["thumbnail"] == RenditionSpec(120, 300, "cover", "jpeg", 80)


def test_null_lifts_a_side_of_the_box() -> None:
    specs = resolve_renditions(None, '{"resized": {"height": null}}')
    assert specs["resized"] == RenditionSpec(1024, None, "inside", "jpeg", 85)


@pytest.mark.parametrize(
    ("upload", "message"),
    [
        ("not json", r"^renditions: not valid JSON \(Expecting value"),
        ("[1, 2]", r"^renditions: expected a JSON object keyed by rendition name$"),
        ('{"original": {}}', r"^renditions: unknown rendition 'original'; expected resized, "),
        ('{"resized": 800}', r"^renditions: resized must be a JSON object of fields$"),
        ('{"resized": {"size": 800}}', r"^renditions: resized: unknown field 'size'; expected "),
        ('{"resized": {"width": 0}}', r"^renditions: resized\.width must be an integer from 1 "),
        ('{"resized": {"width": 16385}}', r"resized\.width .* got 16385$"),
        ('{"resized": {"height": 10.5}}', r"resized\.height must be an integer .* got 10\.5$"),
        ('{"resized": {"width": "800"}}', r"resized\.width must be an integer .* got '800'$"),
        ('{"resized": {"width": true}}', r"resized\.width must be an integer .* got True$"),
        ('{"resized": {"format": "gif"}}', r"resized\.format must be jpeg, webp, png or avif, got"),
        ('{"resized": {"fit": "fill"}}', r"resized\.fit must be inside or cover, got 'fill'$"),
        ('{"resized": {"quality": 0}}', r"resized\.quality must be an integer from 1 to 100, "),
        ('{"resized": {"quality": 101}}', r"resized\.quality .* got 101$"),
        ('{"thumbnail": {"height": null}}', r"thumbnail: fit 'cover' needs both width and height"),
        ('{"compressed": {"fit": "cover"}}', r"compressed: fit 'cover' needs both width and"),
    ],
)
def test_bad_overrides_are_refused_with_a_precise_message(upload: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        resolve_renditions(None, upload)


def test_a_bad_config_names_the_variable() -> None:
    with pytest.raises(ValidationError, match=r"^TASKMILL_RENDITIONS: thumbnail\.quality must"):
        resolve_renditions('{"thumbnail": {"quality": -1}}', None)


def test_specs_round_trip_through_json() -> None:
    specs = resolve_renditions(None, '{"resized": {"format": "png", "height": null}}')
    text = renditions_to_json(specs)
    assert renditions_from_json(text) == specs
    assert json.loads(text)["resized"] == {
        "width": 1024,
        "height": None,
        "fit": "inside",
        "format": "png",
        "quality": 85,
    }


def test_stored_json_must_be_complete() -> None:
    with pytest.raises(ValidationError, match=r"^renditions JSON: resized: missing fit, quality$"):
        renditions_from_json('{"resized": {"width": 1, "height": 1, "format": "jpeg"}}')
