"""PyTorch's part of the in-job probe's pass (backends.modern_keras.capture): the model run
statelessly on detached copies of its weights, differentiated with torch.autograd as the worker
does (backends.torch.gradients)."""
from __future__ import annotations

import sys

import numpy as np

from backends.modern_keras.capture import Capture, nothing_to_put_back, owned


def capture(model, loss=None):
    return Capture(model, loss, "torch", sys.modules[__name__])


def compile_one_pass(one_pass):
    """f(xs, probes, ys) -> (loss, every layer output, d loss / d each probe, d loss / d each weight) as
    numpy: the worker's own pass (backends.torch.gradients), run eagerly as PyTorch runs."""
    from backends.modern_keras.graph import dtype_name
    from backends.torch.gradients import differentiate

    ops = one_pass.keras.ops
    objective, probed, weights = one_pass.objective(ops), one_pass.probed, one_pass.weights
    first_probe = len(probed.inputs) - len(one_pass.probe_inputs)
    probes_at = list(range(first_probe, len(probed.inputs)))

    def run(xs, probes, ys):
        losses = []

        def loss(outputs):  # the loss on this batch, kept: differentiate gives only its gradients
            losses.append(objective(outputs, ys))
            return losses[-1]

        steps = differentiate(probed, [ops.convert_to_tensor(x) for x in xs] + list(probes), probes_at, loss)
        outputs = [o.cpu().numpy() for o in next(steps)]
        probe_grads, weight_grads = next(steps)
        grad_of = dict(zip(map(id, probed.weights), weight_grads))  # the variables beyond them: no gradient
        grads = [grad_of[id(w)] if id(w) in grad_of else np.zeros(tuple(w.shape), dtype_name(w.dtype))
                 for w in weights]
        return losses[-1].detach().cpu().numpy(), outputs, probe_grads, grads

    return run


def read_variables(variables: list) -> list[np.ndarray]:
    return [owned(v) for v in variables]


def device() -> str:
    import torch

    return "gpu" if torch.cuda.is_available() else "cpu"


def versions(keras) -> dict:
    import torch

    return {"keras": keras.__version__, "torch": torch.__version__}


def take_batch(model, args: tuple) -> tuple:
    """PyTorch: ``train_function([batch])``."""
    return args[0][0], args, nothing_to_put_back
