"""Gradients of the model's loss (see backends.modern_keras.stateless_loss) with JAX."""
from __future__ import annotations

import numpy as np

from backends.modern_keras.stateless_loss import stateless_loss


def input_and_weight_gradients(model, inputs, differentiated, objective):
    """For loss = objective(model outputs) in inference mode:
    (d loss / d inputs[i] for i in `differentiated`, d loss / d w for w in model.weights, the outputs)."""
    import jax
    import jax.numpy as jnp

    loss = stateless_loss(model, inputs, differentiated, objective)
    (input_grads, weight_grads), outputs = jax.grad(loss, argnums=(0, 1), has_aux=True)(
        [jnp.asarray(inputs[i]) for i in differentiated], [variable.value for variable in model.weights])
    return [np.asarray(g) for g in input_grads], [np.asarray(g) for g in weight_grads], outputs
