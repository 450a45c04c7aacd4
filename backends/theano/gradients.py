"""Gradients on Theano, for the original Keras's layer operations (backends.original_keras.layer_ops)."""
from __future__ import annotations


def gradients(value, wanted: list) -> list:
    """d value / d w for each tensor or shared variable w in ``wanted``, symbolically; a tensor that
    ``value`` does not depend on gets zeros (a layer whose output does not reach the model's outputs)."""
    import theano

    return theano.grad(value, wanted, disconnected_inputs="ignore")
