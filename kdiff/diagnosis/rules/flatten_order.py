"""Flatten's element order follows the tensor's layout: a Dense after a Flatten whose kernel rows
were laid out for channels-first (C, H, W) order meets channels-last (H, W, C) order, or the
reverse. Keras 2's convert_dense_weights_data_format existed for exactly this. Whatever layout the
sides state, the rows may be in either order (a port's head copied from a model in the other layout):
each of the four reorders is tried, the closest that matches is kept."""
from __future__ import annotations

import math

from kdiff.diagnosis.model import Candidate, LayerEvidence, kernel_of

ID = "flatten-order"


def candidates(evidence: LayerEvidence):
    kernel = kernel_of(evidence.b_weights)
    if evidence.class_name != "Dense" or kernel is None or kernel.ndim != 2:
        return
    if tuple(evidence.feeding_classes) != ("Flatten",) or not evidence.feeding_input_shapes:
        return
    before_flatten = [d for d in evidence.feeding_input_shapes[0][1:]]
    if len(before_flatten) < 2 or None in before_flatten or math.prod(before_flatten) != kernel.shape[0]:
        return
    units = kernel.shape[1]
    # The tensor before Flatten is (d0, d1, ..., dk); either its first or its last axis is the channels.
    first, rest = before_flatten[0], before_flatten[1:]
    last, front = before_flatten[-1], before_flatten[:-1]
    reorders = (
        ("channels-first rows to channels-last order",
         lambda w: w.reshape(first, *rest, units).transpose(*range(1, len(rest) + 1), 0, len(rest) + 1)
         .reshape(-1, units), f"kernel.reshape({first}, {', '.join(map(str, rest))}, {units})"
         f".transpose({', '.join(map(str, [*range(1, len(rest) + 1), 0, len(rest) + 1]))}).reshape(-1, {units})"),
        ("channels-last rows to channels-first order",
         lambda w: w.reshape(*front, last, units).transpose(len(front), *range(len(front)), len(front) + 1)
         .reshape(-1, units), f"kernel.reshape({', '.join(map(str, front))}, {last}, {units})"
         f".transpose({', '.join(map(str, [len(front), *range(len(front)), len(front) + 1]))}).reshape(-1, {units})"),
    )
    n = len(rest)  # rows in the other layout's order than the tensor's own (a head copied across layouts)
    reorders += (
        ("rows in channels-first order for a channels-last tensor",
         lambda w: w.reshape(last, *front, units).transpose(*range(1, n + 1), 0, n + 1).reshape(-1, units),
         f"kernel.reshape({last}, {', '.join(map(str, front))}, {units})"
         f".transpose({', '.join(map(str, [*range(1, n + 1), 0, n + 1]))}).reshape(-1, {units})"),
        ("rows in channels-last order for a channels-first tensor",
         lambda w: w.reshape(*rest, first, units).transpose(n, *range(n), n + 1).reshape(-1, units),
         f"kernel.reshape({', '.join(map(str, rest))}, {first}, {units})"
         f".transpose({', '.join(map(str, [n, *range(n), n + 1]))}).reshape(-1, {units})"),
    )
    for words, reorder, expression in reorders:
        yield Candidate(
            cause=ID,
            b_weights=(reorder(kernel), *(w for _, w in evidence.b_weights[1:])),
            fix=(f"Permute the rows of the kernel of '{evidence.b_layer}' ({words}): the Flatten before it orders "
                 "elements differently from the framework the weights were trained in."),
            code=(f'layer = model.get_layer("{evidence.b_layer}")\n'
                  "kernel, *rest = layer.get_weights()\n"
                  f"layer.set_weights([{expression}, *rest])"),
        )
