"""A kernel copied with its axes in the wrong order (e.g. Keras 1 'th' (out, in, rows, cols)
read as (rows, cols, in, out), or a Dense kernel taken from a framework that stores (out, in)).
Only permutations that keep the kernel's shape can have loaded without an error."""
from __future__ import annotations

import itertools

from kdiff.diagnosis.model import Candidate, LayerEvidence, kernel_of

ID = "kernel-layout"


def candidates(evidence: LayerEvidence):
    kernel = kernel_of(evidence.b_weights)
    if kernel is None:
        return
    for order in itertools.permutations(range(kernel.ndim)):
        if list(order) == sorted(order) or tuple(kernel.shape[i] for i in order) != kernel.shape:
            continue
        yield Candidate(
            cause=ID,
            b_weights=(kernel.transpose(order), *(w for _, w in evidence.b_weights[1:])),
            fix=(f"Transpose the kernel of '{evidence.b_layer}' with axes {order}: it was copied with its axes "
                 "in another order than this framework expects."),
            code=(f'layer = model.get_layer("{evidence.b_layer}")\n'
                  "kernel, *rest = layer.get_weights()\n"
                  f"layer.set_weights([kernel.transpose({order}), *rest])"),
        )
