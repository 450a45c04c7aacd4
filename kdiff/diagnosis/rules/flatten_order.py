"""Flatten's element order follows the tensor's layout: a Dense after a Flatten whose kernel rows
were laid out for channels-first (C, H, W) order meets channels-last (H, W, C) order, or the
reverse. Keras 2's convert_dense_weights_data_format existed for exactly this."""
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
