"""JAX's part of the in-job probe's pass (backends.modern_keras.capture): one jitted function of the
probes and the weights' values, run statelessly, so the job's variables are only read."""
from __future__ import annotations

import itertools
import sys

import numpy as np

from backends.modern_keras.capture import Capture, owned


def capture(model, loss=None):
    return Capture(model, loss, "jax", sys.modules[__name__])


def compile_one_pass(one_pass):
    """f(xs, probes, ys) -> (loss, every layer output, d loss / d each probe, d loss / d each weight) as numpy."""
    import jax

    from backends.modern_keras.graph import dtype_name

    objective, probed, weights = one_pass.objective(one_pass.keras.ops), one_pass.probed, one_pass.weights
    split = len(probed.trainable_variables)   # one_pass.weights: the trainable ones, then the others

    def loss(probes, weight_values, xs, ys):
        outputs, _ = probed.stateless_call(weight_values[:split], weight_values[split:],
                                           list(xs) + list(probes), training=False)
        outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        return objective(outputs, ys), outputs

    differentiable = [np.issubdtype(np.dtype(dtype_name(w.dtype)), np.inexact) for w in weights]

    def split_loss(probes, float_weights, other_weights, xs, ys):
        floats, others = iter(float_weights), iter(other_weights)
        return loss(probes, [next(floats) if d else next(others) for d in differentiable], xs, ys)

    function = jax.jit(jax.value_and_grad(split_loss, argnums=(0, 1), has_aux=True))

    def run(xs, probes, ys):
        values = [w.value for w in weights]
        floats = [v for v, d in zip(values, differentiable) if d]
        others = [v for v, d in zip(values, differentiable) if not d]
        (value, outputs), (probe_grads, float_grads) = function(probes, floats, others, list(xs), list(ys))
        grads, floats = [], iter(float_grads)
        for w, d in zip(weights, differentiable):
            grads.append(np.asarray(next(floats)) if d else np.zeros(tuple(w.shape), dtype_name(w.dtype)))
        return value, [np.asarray(o) for o in outputs], [np.asarray(g) for g in probe_grads], grads

    return run


def read_variables(variables: list) -> list[np.ndarray]:
    return [owned(v) for v in variables]


def device() -> str:
    import jax

    return jax.default_backend()


def versions(keras) -> dict:
    import jax

    return {"keras": keras.__version__, "jax": jax.__version__}


def take_batch(model, args: tuple) -> tuple:
    """JAX: ``train_function(state, iterator)``; the batch, the arguments with the batch put back in
    front of the iterator, and the function putting the model's variables back as ``fit`` left them
    (they hold copies of ``state`` until then)."""
    import jax.numpy as jnp

    state, iterator, *rest = args
    groups = [model.trainable_variables, model.non_trainable_variables,
              model.optimizer.variables if model.optimizer is not None else [], model.metrics_variables]
    pairs = [(variable, value) for group, values in zip(groups, state) for variable, value in zip(group, values)]
    if len(state) != 4 or any(len(group) != len(values) for group, values in zip(groups, state)):
        raise RuntimeError("KerasProbe: this Keras's JAX training state is not (trainable, non-trainable, "
                           "optimizer, metrics) variables")
    left = [(variable, variable._value) for variable, _ in pairs]
    flags = (getattr(model, "_jax_state", None), getattr(model, "_jax_state_synced", True))

    def restore() -> None:
        for variable, value in left:
            variable._value = value
        model._jax_state, model._jax_state_synced = flags

    try:
        for variable, value in pairs:   # copies: a capture's own compiled calls may donate what they are given
            variable._value = jnp.array(value, copy=True)
    except BaseException:
        restore()
        raise
    try:
        data = next(iterator)
    except BaseException:
        restore()
        raise
    return data, (state, itertools.chain([data], iterator), *rest), restore
