"""What the theano and modern-Keras trainers share: optimizer names, the canonical names of
their settings and slots, and the result of one step."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from backends.errors import ModelInputError

# kdiff's optimizer names -> the class name every Keras generation uses
OPTIMIZER_CLASSES = {"sgd": "SGD", "adam": "Adam", "rmsprop": "RMSprop", "adagrad": "Adagrad",
                     "adadelta": "Adadelta", "adamax": "Adamax", "nadam": "Nadam"}
# settings kdiff does not compare: gradient clipping happens in different places in each
# generation (Keras 1/2 in get_gradients, Keras 3 in apply), so a step's gradient would differ
UNSUPPORTED_SETTINGS = {"clipnorm", "clipvalue", "global_clipnorm"}


@dataclass(frozen=True)
class StepResult:
    updates: list            # new value - old value, per trainable weight
    slots_before: dict       # slot kind ("m", "v", "delta", ...) -> one array per trainable weight
    slots_after: dict
    iterations_before: int
    iterations_after: int


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
