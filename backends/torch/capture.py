"""PyTorch's part of the in-job probe's pass (backends.modern_keras.capture): the model run
statelessly on detached copies of its weights, differentiated with torch.autograd."""
from __future__ import annotations

import sys

import numpy as np


def capture(model, loss=None):
    from backends.modern_keras.capture import Capture

    return Capture(model, loss, "torch", sys.modules[__name__])


def compile_one_pass(one_pass):
    """f(xs, probes, ys) -> (loss, every layer output, d loss / d each probe, d loss / d each weight) as numpy."""
    import torch

    ops = one_pass.keras.ops
    objective, probed, weights = one_pass.objective(ops), one_pass.probed, one_pass.weights
    trainable, non_trainable = probed.trainable_variables, probed.non_trainable_variables

    def run(xs, probes, ys):
        probe_values = [ops.convert_to_tensor(p).requires_grad_() for p in probes]
        values = {id(v): v.value.detach().requires_grad_(v.value.is_floating_point()) for v in weights}
        with torch.enable_grad():
            outputs, _ = probed.stateless_call([values[id(v)] for v in trainable],
                                               [values[id(v)] for v in non_trainable],
                                               [ops.convert_to_tensor(x) for x in xs] + probe_values, training=False)
            outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
            loss = objective(outputs, ys)
        leaves = probe_values + [values[id(w)] for w in weights]
        wanted = [leaf for leaf in leaves if leaf.requires_grad]
        found = dict(zip(map(id, wanted), torch.autograd.grad(loss, wanted, allow_unused=True)))
        grads = [found.get(id(leaf)) for leaf in leaves]
        grads = [np.zeros(tuple(leaf.shape), _numpy_dtype(leaf)) if g is None else g.detach().cpu().numpy()
                 for leaf, g in zip(leaves, grads)]
        return (loss.detach().cpu().numpy(), [o.detach().cpu().numpy() for o in outputs],
                grads[:len(probes)], grads[len(probes):])

    return run


def _numpy_dtype(tensor):
    return tensor.detach().cpu()[:0].numpy().dtype if tensor.dim() else tensor.detach().cpu().numpy().dtype


def read_variables(variables: list) -> list[np.ndarray]:
    from backends.modern_keras.capture import owned

    return [owned(v) for v in variables]


def device() -> str:
    import torch

    return "gpu" if torch.cuda.is_available() else "cpu"


def versions(keras) -> dict:
    import torch

    return {"keras": keras.__version__, "torch": torch.__version__}


def take_batch(model, args: tuple) -> tuple:
    """PyTorch: ``train_function([batch])``."""
    return args[0][0], args, _put_back_nothing


def _put_back_nothing() -> None:
    pass
