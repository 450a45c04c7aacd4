"""Rebuilding a Keras 1/2 model in the other memory layout (``kdiff --b-layout``).

What this reproduces is a person who converted a model to channels_last (or channels_first):
every layer's data_format becomes that layout, BatchNormalization's channels axis follows,
the inputs are declared with the channels axis moved, and the weights are kept as they are
(Keras 2 kernels, and Keras 1 'th' kernels once the loader moved them, do not depend on the
layout). What such a person forgets to do (permute the Dense after a Flatten) stays undone:
that is what kdiff then finds. Layers that cannot be translated without knowing what the
author meant (Permute, Reshape) are refused.
"""
from __future__ import annotations

import copy

from backends.common.errors import ModelInputError
from backends.modern_keras.legacy_config import LayerSpec, ModelDescription

LAYOUTS = ("channels_first", "channels_last")
UNTRANSLATABLE = ("Permute", "Reshape")


def in_layout(description: ModelDescription, layout: str) -> ModelDescription:
    """A copy of the description built in ``layout`` (the original is kept for loading weights)."""
    if layout not in LAYOUTS:
        raise ModelInputError(f"unknown layout {layout!r}", f"use one of: {', '.join(LAYOUTS)}")
    changed = copy.deepcopy(description)
    source = _source_layout(changed)
    for spec in (s for top in changed.layers for s in top.walk()):
        if spec.class_name in UNTRANSLATABLE:
            raise ModelInputError(
                f"layer '{spec.name}' ({spec.class_name}) cannot be rebuilt in {layout}: its axes are "
                "written for the file's own layout, and which axes it means in the other one is not known",
                "compare without --b-layout, or convert the model yourself and pass it as --b BACKEND:FILE")
        _translate(spec, source, layout)
    return changed


def _source_layout(description: ModelDescription) -> str:
    """The layout the file's image layers state (channels_last when none states one)."""
    stated = {spec.config.get("data_format") for top in description.layers for spec in top.walk()
              if spec.class_name != "Flatten" and spec.config.get("data_format") in LAYOUTS}
    if len(stated) > 1:
        raise ModelInputError("the model mixes channels_first and channels_last layers",
                              "compare without --b-layout")
    return stated.pop() if stated else "channels_last"


def _translate(spec: LayerSpec, source: str, layout: str) -> None:
    config = spec.config
    if "data_format" in config:
        config["data_format"] = layout
    if source == layout:
        return
    channels_axis_before, channels_axis_after = (1, -1) if source == "channels_first" else (-1, 1)
    if spec.class_name == "InputLayer":
        shape = list(config["batch_input_shape"])
        if len(shape) >= 4:  # images and volumes; a (batch, steps, features) input keeps its order
            config["batch_input_shape"] = _moved(shape, source)
    elif spec.class_name == "BatchNormalization":
        axis = config.get("axis", -1)
        if isinstance(axis, list) and len(axis) == 1:
            axis = axis[0]
        if axis == channels_axis_before:
            config["axis"] = channels_axis_after
        elif axis != channels_axis_after:
            raise ModelInputError(f"BatchNormalization '{spec.name}' normalises axis {axis}, not the channels",
                                  "compare without --b-layout")
    elif spec.class_name in ("Concatenate", "Softmax"):
        axis = config.get("axis", -1)
        if axis == channels_axis_before:
            config["axis"] = channels_axis_after
        elif axis != channels_axis_after:
            raise ModelInputError(f"{spec.class_name} '{spec.name}' works along axis {axis}, a spatial axis "
                                  "whose position in the other layout kdiff does not translate",
                                  "compare without --b-layout")


def _moved(shape: list, source: str) -> list:
    """(batch, C, ...) -> (batch, ..., C) from channels_first; the reverse from channels_last."""
    if source == "channels_first":
        return [shape[0], *shape[2:], shape[1]]
    return [shape[0], shape[-1], *shape[1:-1]]
