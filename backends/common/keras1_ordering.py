"""The one rule for the image ordering of Keras 1 layers whose config does not say it.

Keras 1.2 (and every 1.x) left `dim_ordering` out of the configs of ZeroPadding2D/3D, UpSampling2D/3D,
Cropping2D/3D and SpatialDropout2D/3D (their get_config never wrote it; measured on Keras 1.2.2): loading
such a file, Keras 1 took the ordering from the loading machine's keras.json. The well-known Keras 1
VGG16 is 'th' with a ZeroPadding2D before every convolution, so on a default ('tf') machine it does not
load back at all.

The rule, used by the theano worker before Keras 1 builds the model (backends/original_keras/loading.py)
and by the Keras 3 / tf_keras translation (backends/modern_keras/legacy_config.py), so that both sides
build the same model: every layer of a model used the one global setting, so a layer that states no
ordering takes the ordering the model's other layers state (convolutions and pooling always write it);
where they state none, or disagree, the default of the Keras 1 release that wrote the file ('th' up to
1.0.8, 'tf' from 1.1.0, which is what keras.json said on a fresh install).

Framework-free: plain JSON dicts in, plain JSON dicts out (workers of every backend import it).
"""
from __future__ import annotations

import copy

# Keras 1 layer classes that take `dim_ordering` (Keras 1 names; aliases included).
KERAS1_ORDERED_CLASSES = frozenset({
    "Convolution2D", "Conv2D", "Convolution3D", "Conv3D", "AtrousConvolution2D", "AtrousConv2D",
    "Deconvolution2D", "Deconv2D", "SeparableConvolution2D", "SeparableConv2D", "LocallyConnected2D",
    "ConvLSTM2D", "MaxPooling2D", "AveragePooling2D", "MaxPooling3D", "AveragePooling3D",
    "GlobalMaxPooling2D", "GlobalAveragePooling2D", "GlobalMaxPooling3D", "GlobalAveragePooling3D",
    "ZeroPadding2D", "ZeroPadding3D", "UpSampling2D", "UpSampling3D", "Cropping2D", "Cropping3D",
    "SpatialDropout2D", "SpatialDropout3D",
})
# Those whose get_config leaves it out (Keras 1.2.2, checked class by class).
KERAS1_UNSAVED_ORDERING = frozenset({
    "ZeroPadding2D", "ZeroPadding3D", "UpSampling2D", "UpSampling3D", "Cropping2D", "Cropping3D",
    "SpatialDropout2D", "SpatialDropout3D",
})
ORDERINGS = ("th", "tf")


def layer_entries(node):
    """Every {'class_name', 'config'} dict inside a model config, nested models' layers included."""
    if isinstance(node, dict):
        if isinstance(node.get("class_name"), str) and "config" in node:
            yield node
        for value in node.values():
            yield from layer_entries(value)
    elif isinstance(node, list):
        for value in node:
            yield from layer_entries(value)


def version_tuple(version: str) -> tuple[int, ...]:
    """'1.2.2' -> (1, 2, 2); a bare major ('1', when inferred) -> (1,)."""
    parts = []
    for part in str(version).split(".")[:3]:
        digits = "".join(c for c in part if c.isdigit())
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


def default_ordering(version: str) -> str:
    """The ordering a fresh install of Keras `version` used: 'th' up to 1.0.8, 'tf' from 1.1.0."""
    return "th" if (1,) < version_tuple(version) < (1, 0, 9) else "tf"


def stated_orderings(model_config: dict) -> set:
    """The `dim_ordering` values the model's layers state."""
    return {entry["config"]["dim_ordering"] for entry in layer_entries(model_config)
            if isinstance(entry["config"], dict) and entry["config"].get("dim_ordering") in ORDERINGS}


def inferred_ordering(model_config: dict, version: str) -> str:
    """'th' or 'tf': the ordering a layer of this Keras 1 model that states none was built in."""
    stated = stated_orderings(model_config)
    return stated.pop() if len(stated) == 1 else default_ordering(version)


def fill_dim_ordering(model_config: dict, version: str) -> tuple[dict, list[str]]:
    """A copy of a Keras 1 model config in which every layer that takes `dim_ordering` states one (the
    inferred ordering where it stated none), and the names of the layers that got it."""
    model_config = copy.deepcopy(model_config)
    ordering = inferred_ordering(model_config, version)
    filled = []
    for entry in layer_entries(model_config):
        config = entry["config"]
        if entry["class_name"] in KERAS1_ORDERED_CLASSES and isinstance(config, dict) \
                and config.get("dim_ordering") in (None, "default"):
            config["dim_ordering"] = ordering
            filled.append(str(config.get("name", entry["class_name"])))
    return model_config, filled
