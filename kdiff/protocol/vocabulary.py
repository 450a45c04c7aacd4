"""What the coordinator and a worker say to each other inside the framing of ``kdiff.protocol.wire``:
the commands a worker answers, and what the arrays of each message are called. Both sides spell
array keys only through this module.

A message's arrays are a dict of key -> array. A list of arrays of one kind travels under
PREFIX0, PREFIX1, ... (``pack`` / ``unpack``): a call with one list uses the empty prefix
(``VALUES``); a call or answer with several gives each list its prefix below.

=====================  ==========================================================================
command                its arrays (call -> answer or streamed parts)
=====================  ==========================================================================
forward, self_check    VALUES: the model's inputs -> parts of VALUES: a layer's outputs
outputs                -> by_layer: the outputs the last forward pass kept (with "gradients": true,
                       the output gradients the last backward pass kept)
weights, set_weights   VALUES: the layer's weights, in its own order
run_layer              VALUES: the layer's inputs -> VALUES: its outputs
layer_backward         VALUES: the layer's inputs, OUTPUT_GRADIENTS: d loss / d its outputs ->
                       INPUT_GRADIENTS, WEIGHT_GRADIENTS (the result's "weights": their names)
run_layer_changed      VALUES: the layer's inputs, WEIGHTS: the changed layer's weights -> VALUES
backward               MODEL_INPUTS, PROJECTIONS or LABELS -> parts of OUTPUT_GRADIENTS and
                       WEIGHT_GRADIENTS per layer
forward_backward       the same -> parts of VALUES (kind 'output') and of the gradients (kind 'gradient')
train_gradients        MODEL_INPUTS, LABELS -> parts of OUTPUTS, OUTPUT_GRADIENTS, WEIGHT_GRADIENTS
optimizer_step         WEIGHT_GRADIENTS by position among the trainable weights -> UPDATES, APPLIED,
                       slots(SLOTS_BEFORE / SLOTS_AFTER), STATISTICS_BEFORE/AFTER, BATCH_STATISTICS
trial_step             -> UPDATES, STATISTICS_UPDATES
load (a listening      files(FILES): the model's files' bytes, when the worker is on another host
worker), save          -> files(FILES): the files written (with the result's "files": their names)
=====================  ==========================================================================
"""
from __future__ import annotations

import numpy as np

# Every command a worker answers (backends.common.commands registers exactly these).
COMMANDS = ("load", "forward", "self_check", "outputs", "weights", "set_weights", "run_layer", "layer_config",
            "run_layer_changed", "change_layer", "save", "backward", "forward_backward", "layer_backward",
            "compile_optimizer", "train_gradients", "optimizer_step", "trial_step")

# The prefixes of the array lists
VALUES = ""                  # the one list of a call: a model's or a layer's inputs, a layer's outputs or weights
MODEL_INPUTS = "x"           # the model's inputs, where other lists travel with them
PROJECTIONS = "p"            # one per model output: the differentiated value is sum(output * projection)
LABELS = "y"                 # one per model output: the targets of a named loss
OUTPUTS = "o"                # a layer's outputs, where its gradients travel with them
OUTPUT_GRADIENTS = "g"       # d loss / d each of a layer's outputs
INPUT_GRADIENTS = "gi"       # d loss / d each of a layer's inputs (its backward run alone)
WEIGHT_GRADIENTS = "dw"      # d loss / d each weight (of a layer; or, to optimizer_step, of each trainable weight)
WEIGHTS = "w"                # the weights a changed layer holds
UPDATES = "u"                # what an optimizer step added to each trainable weight
APPLIED = "a"                # the gradient an optimizer step applied to each trainable weight
SLOTS_BEFORE = "b"           # an optimizer's slots of one kind before the step (see slots)
SLOTS_AFTER = "s"            # ... and after it
STATISTICS_BEFORE = "nb"     # each moving statistic before the step
STATISTICS_AFTER = "na"      # ... after it
BATCH_STATISTICS = "nx"      # the batch's own value of each moving statistic
STATISTICS_UPDATES = "n"     # what a trial step would add to each moving statistic
FILES = "f"                  # a file's bytes, as uint8, by its role (model, weights, custom_objects) or name


def pack(values, prefix: str = VALUES) -> dict[str, np.ndarray]:
    """A list of arrays as a message's arrays: PREFIX0, PREFIX1, ..."""
    return {f"{prefix}{i}": value for i, value in enumerate(values)}


def unpack(arrays: dict, prefix: str = VALUES) -> list[np.ndarray]:
    """The list packed under ``prefix``, in order (other keys are left alone)."""
    keys = [key for key in arrays if key.startswith(prefix) and key[len(prefix):].isdigit()]
    return [arrays[key] for key in sorted(keys, key=lambda key: int(key[len(prefix):]))]


def count(arrays: dict, prefix: str) -> int:
    """How many arrays are packed under ``prefix``."""
    return sum(1 for key in arrays if key.startswith(prefix) and key[len(prefix):].isdigit())


def pack_slots(slots: dict[str, list], prefix: str) -> dict[str, np.ndarray]:
    """An optimizer's slots, by kind ('m', 'v', ...), each a list over the trainable weights."""
    return {f"{prefix}:{kind}:{i}": value for kind, values in slots.items() for i, value in enumerate(values)}


def unpack_slots(arrays: dict, prefix: str, kinds, weights: int) -> dict[str, list[np.ndarray]]:
    return {kind: [arrays[f"{prefix}:{kind}:{i}"] for i in range(weights)] for kind in kinds}


def pack_files(files: dict[str, bytes]) -> dict[str, np.ndarray]:
    """Files' bytes by name (a role, or a file name), each as one uint8 array."""
    return {f"{FILES}:{name}": np.frombuffer(data, dtype=np.uint8) for name, data in files.items()}


def unpack_files(arrays: dict) -> dict[str, bytes]:
    """The files packed by pack_files (other keys are left alone); an array that is not uint8 is not a file."""
    found = {}
    for key, value in arrays.items():
        if key.startswith(f"{FILES}:") and getattr(value, "dtype", None) == np.uint8 and value.ndim == 1:
            found[key[len(FILES) + 1:]] = value.tobytes()
    return found


def pack_by_layer(outputs: dict[str, list]) -> tuple[dict[str, int], dict[str, np.ndarray]]:
    """Several layers' outputs in one message: (how many each layer has, the arrays)."""
    return ({layer: len(values) for layer, values in outputs.items()},
            {f"{layer}:{i}": value for layer, values in outputs.items() for i, value in enumerate(values)})


def unpack_by_layer(counts: dict[str, int], arrays: dict) -> dict[str, list[np.ndarray]]:
    return {layer: [arrays[f"{layer}:{i}"] for i in range(number)] for layer, number in counts.items()}
