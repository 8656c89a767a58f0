"""Presets: named, small declarations of the five APIs' auth flows and of OAuth2's, as data.

A preset turns a route's `auth:` fields into an `AuthSpec` and does no I/O. Adding an API means a
module here and a line in `PRESETS`, never a branch in the engine.
"""

from __future__ import annotations

from authproxy.auth.presets import coco, cosmic, crux, cucumberstudio, emnify, oauth2
from authproxy.auth.presets.base import Preset
from authproxy.errors import PresetProblem

PRESETS: dict[str, Preset] = {
    preset.name: preset
    for preset in (
        cosmic.PRESET,
        coco.PRESET,
        crux.PRESET,
        cucumberstudio.PRESET,
        emnify.PRESET,
        oauth2.PRESET,
    )
}

__all__ = ["PRESETS", "Preset", "PresetProblem"]
