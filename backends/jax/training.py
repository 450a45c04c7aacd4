"""The loss and its gradient with respect to the model outputs, with JAX."""
from __future__ import annotations

import numpy as np


def loss_and_output_gradients(loss_of, targets, predictions):
    """(sum over outputs of the batch mean of loss_of(target, prediction), d loss / d prediction)."""
    import jax
    import jax.numpy as jnp

    def loss(outputs):
        return sum(jnp.mean(loss_of(jnp.asarray(t, dtype=o.dtype), o)) for t, o in zip(targets, outputs))

    value, grads = jax.value_and_grad(loss)([jnp.asarray(p) for p in predictions])
    return np.asarray(value), [np.asarray(g) for g in grads]


def to_tensor(array):
    import jax.numpy as jnp

    return jnp.asarray(array)
