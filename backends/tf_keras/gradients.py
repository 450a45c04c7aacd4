"""Gradients of the model's loss with a TensorFlow tape, as for Keras 3 on TensorFlow,
with one difference: tf_keras's fused batch normalization (its default for 4-D and 5-D inputs)
defines no gradient for the moving mean and variance, so BatchNormalization layers run unfused
(the same arithmetic, in separate ops) while the gradients are taken."""
from __future__ import annotations

import contextlib

from backends.tensorflow import gradients as tensorflow_gradients


def differentiate(model, inputs, differentiated, objective):
    """As backends.tensorflow.gradients.differentiate: the outputs, then the input and weight gradients."""
    with unfused_batch_normalization(model):
        yield from tensorflow_gradients.differentiate(model, inputs, differentiated, objective)


@contextlib.contextmanager
def unfused_batch_normalization(model):
    import tf_keras

    fused = [layer for layer in model.submodules
             if isinstance(layer, tf_keras.layers.BatchNormalization) and layer.fused]
    for layer in fused:
        layer.fused = False
    try:
        yield
    finally:
        for layer in fused:
            layer.fused = True
