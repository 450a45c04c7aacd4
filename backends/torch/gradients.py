"""Gradients of the model's loss (see backends.modern_keras.stateless_loss) with torch autograd."""
from __future__ import annotations

import numpy as np

from backends.modern_keras.stateless_loss import stateless_loss


def differentiate(model, inputs, differentiated, objective):
    """For loss = objective(model outputs) in inference mode, in two steps: yields the outputs (once the
    forward pass is done), then (d loss / d inputs[i] for i in `differentiated`, d loss / d w for w in
    model.weights)."""
    import torch
    from keras import ops

    input_values = [ops.convert_to_tensor(inputs[i]).requires_grad_() for i in differentiated]
    weight_values = [variable.value.detach().requires_grad_(variable.value.is_floating_point())
                     for variable in model.weights]   # an integer weight has no gradient: zeros
    with torch.enable_grad():
        loss, outputs = stateless_loss(model, inputs, differentiated, objective)(input_values, weight_values)
    yield [output.detach() for output in outputs]
    leaves = input_values + weight_values
    wanted = [leaf for leaf in leaves if leaf.requires_grad]
    found = dict(zip(map(id, wanted), torch.autograd.grad(loss, wanted, allow_unused=True)))
    grads = [found.get(id(leaf)) for leaf in leaves]
    grads = [np.zeros(tuple(leaf.shape), numpy_dtype(leaf)) if g is None else g.detach().cpu().numpy()
             for leaf, g in zip(leaves, grads)]
    yield grads[:len(input_values)], grads[len(input_values):]


def numpy_dtype(tensor) -> np.dtype:
    """The numpy dtype of a tensor's values, without copying them off its device."""
    import torch

    return torch.empty(0, dtype=tensor.dtype).numpy().dtype
