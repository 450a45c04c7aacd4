"""The loss and its gradient with respect to the model outputs, with torch autograd."""
from __future__ import annotations


def loss_and_output_gradients(loss_of, targets, predictions):
    """(sum over outputs of the batch mean of loss_of(target, prediction), d loss / d prediction)."""
    import torch
    from keras import ops

    outputs = [ops.convert_to_tensor(p).detach().requires_grad_() for p in predictions]
    with torch.enable_grad():
        loss = sum(torch.mean(loss_of(ops.convert_to_tensor(t, dtype=o.dtype), o)) for t, o in zip(targets, outputs))
    grads = torch.autograd.grad(loss, outputs)
    return loss.detach().cpu().numpy(), [g.detach().cpu().numpy() for g in grads]


def to_tensor(array):
    from keras import ops

    return ops.convert_to_tensor(array)
