"""Gradients of the model's loss (see backends.modern_keras.stateless_loss) with JAX."""
from __future__ import annotations

import numpy as np

from backends.modern_keras.stateless_loss import stateless_loss


def differentiate(model, inputs, differentiated, objective):
    """For loss = objective(model outputs) in inference mode, in two steps: yields the outputs (once the
    forward pass is done), then (d loss / d inputs[i] for i in `differentiated`, d loss / d w for w in
    model.weights)."""
    import jax
    import jax.numpy as jnp

    loss = stateless_loss(model, inputs, differentiated, objective)
    value, pull_back, outputs = jax.vjp(loss, [jnp.asarray(inputs[i]) for i in differentiated],
                                        [variable.value for variable in model.weights], has_aux=True)
    yield outputs
    input_grads, weight_grads = pull_back(jnp.ones_like(value))
    yield [np.asarray(g) for g in input_grads], [np.asarray(g) for g in weight_grads]
