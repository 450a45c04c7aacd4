"""The scalar whose gradients `backward` reports, for Keras 3 (any backend) and tf_keras.

Without a loss it is a fixed random projection of the model outputs, ``sum_k sum(output_k *
projections[k])``; with a Keras loss name and one label array per output it is the model's own
loss as training computes it: the batch mean of the loss, summed over the outputs."""
from __future__ import annotations

from types import SimpleNamespace

from backends.common.errors import ModelInputError


def loss_function(keras, name: str):
    """Keras's loss function called `name` (y_true, y_pred) -> per-sample loss."""
    try:
        return keras.losses.get(name)
    except ValueError as exc:
        raise ModelInputError(f"{keras.__name__} has no loss {name!r}",
                              "use a Keras loss name, e.g. mse or categorical_crossentropy") from exc


def objective(keras, projections: list, loss: str | None = None, targets: list | None = None):
    """f(model outputs) -> the scalar to differentiate, in the framework's own ops (so any
    backend's autodiff can trace it)."""
    ops = keras_ops(keras)
    if loss is None:
        return lambda outputs: sum(ops.sum(output * ops.cast(ops.convert_to_tensor(projection), output.dtype))
                                   for output, projection in zip(outputs, projections))
    loss_of = loss_function(keras, loss)
    return lambda outputs: sum(ops.mean(loss_of(ops.convert_to_tensor(target), output))
                               for output, target in zip(outputs, targets))


def keras_ops(keras):
    """sum, mean, cast and convert_to_tensor: keras.ops in Keras 3, TensorFlow's own for tf_keras."""
    if hasattr(keras, "ops"):
        return keras.ops
    import tensorflow as tf

    return SimpleNamespace(sum=tf.reduce_sum, mean=tf.reduce_mean, cast=tf.cast, convert_to_tensor=tf.convert_to_tensor)
