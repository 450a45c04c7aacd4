"""What the theano and modern-Keras trainers share: optimizer names, the canonical names of
their settings and slots, and the result of one step."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from backends.common.errors import ModelInputError

# kdiff's optimizer names -> the class name every Keras generation uses
OPTIMIZER_CLASSES = {"sgd": "SGD", "adam": "Adam", "rmsprop": "RMSprop", "adagrad": "Adagrad",
                     "adadelta": "Adadelta", "adamax": "Adamax", "nadam": "Nadam"}
# settings kdiff does not compare: gradient clipping happens in different places in each
# generation (Keras 1/2 in get_gradients, Keras 3 in apply), so a step's gradient would differ
UNSUPPORTED_SETTINGS = {"clipnorm", "clipvalue", "global_clipnorm"}
# The layers whose moving statistics (non-trainable weights) a step updates from the batch
BATCH_NORMALIZATION = ("BatchNormalization",)
# A layer setting a trial step may change, per layer class
LAYER_SETTINGS = {"momentum"}


@dataclass(frozen=True)
class StepResult:
    updates: list            # new value - old value, per trainable weight
    slots_before: dict       # slot kind ("m", "v", "delta", ...) -> one array per trainable weight
    slots_after: dict
    iterations_before: int
    iterations_after: int
    statistics: "StatisticsStep | None" = None


@dataclass(frozen=True)
class StatisticsStep:
    """The moving statistics (BatchNormalization's moving mean and variance) of one step: each
    one's value before and after, the batch's own statistic of that kind (the mean, or the
    biased variance, of the layer's input over every axis but the channel axis) and how many
    values each batch statistic averages."""
    before: list = field(default_factory=list)
    after: list = field(default_factory=list)
    batch: list = field(default_factory=list)
    samples: list = field(default_factory=list)


def optimizer_class_name(name: str) -> str:
    key = name.lower().replace("_", "")
    if key not in OPTIMIZER_CLASSES:
        raise ModelInputError(f"unknown optimizer {name!r}", f"use one of: {', '.join(OPTIMIZER_CLASSES)}")
    return OPTIMIZER_CLASSES[key]


def check_settings(config: dict) -> None:
    refused = sorted(UNSUPPORTED_SETTINGS & config.keys())
    if refused:
        raise ModelInputError(f"kdiff train does not support the optimizer setting(s) {', '.join(refused)}",
                              "leave gradient clipping out when comparing optimizers")


def update_of(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    return np.asarray(after, dtype=before.dtype) - before


def pop_iterations(config: dict) -> int | None:
    """The 'iterations' setting (the optimizer's step counter to start from: not a constructor
    argument, set on the built optimizer), taken out of ``config``."""
    if "iterations" not in config:
        return None
    value = config.pop("iterations")
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ModelInputError(f"iterations={value!r} is not a step count",
                              "give the optimizer's iteration count as a whole number >= 0, e.g. iterations=5")
    return int(value)


def check_layer_settings(layers: dict) -> None:
    for layer, settings in layers.items():
        refused = sorted(set(settings) - LAYER_SETTINGS)
        if refused:
            raise ModelInputError(f"a trial step cannot change {', '.join(refused)} of layer {layer!r}",
                                  f"kdiff re-runs a step with another {', '.join(sorted(LAYER_SETTINGS))} only")


def trial_settings(snapshot, overrides: dict, layers: dict | None) -> tuple[dict, int | None, tuple]:
    """A trial step's settings, checked: (the optimizer overrides without 'iterations', the iterations
    it asks for or None, the last step's (weights before, optimizer state, gradients))."""
    if snapshot is None:
        raise ModelInputError("no step to re-run yet", "run 'optimizer_step' first")
    check_settings(overrides)
    check_layer_settings(layers or {})
    overrides = dict(overrides)
    iterations = pop_iterations(overrides)
    return overrides, iterations, snapshot


def batch_moments(x: np.ndarray, axes: list[int]) -> tuple[np.ndarray, np.ndarray, int]:
    """The batch mean and biased variance of ``x`` over every axis but ``axes`` (float64), and
    how many values each averages."""
    x = np.asarray(x, np.float64)
    keep = {axis % x.ndim for axis in axes}
    reduce = tuple(axis for axis in range(x.ndim) if axis not in keep)
    samples = int(np.prod([x.shape[axis] for axis in reduce]))
    return x.mean(axis=reduce), x.var(axis=reduce), samples
