"""TensorFlow's part of the in-job probe's pass (backends.modern_keras.capture), for Keras 3 on
TensorFlow; tf_keras's capture module reuses it with its unfused batch normalization."""
from __future__ import annotations

import contextlib
import sys

import numpy as np

from backends.modern_keras.capture import Capture, nothing_to_put_back


def capture(model, loss=None):
    return Capture(model, loss, "tensorflow", sys.modules[__name__])


def compile_one_pass(one_pass, traced=contextlib.nullcontext):
    """f(xs, probes, ys) -> (loss, every layer output, d loss / d each probe, d loss / d each weight) as
    numpy, from one tf.function compiled once; ``traced`` wraps each call (tf_keras: unfused BN)."""
    import tensorflow as tf

    from backends.modern_keras.objectives import keras_ops
    from backends.tensorflow.gradients import tf_variable

    objective, probed = one_pass.objective(keras_ops(one_pass.keras)), one_pass.probed
    variables = [tf_variable(w) for w in one_pass.weights]
    count = len(one_pass.probe_inputs)

    @tf.function(autograph=False, reduce_retracing=True)
    def step(xs, probes, ys):
        with tf.GradientTape() as tape:
            tape.watch(probes)
            tape.watch(variables)
            outputs = probed(list(xs) + list(probes), training=False)
            outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
            loss = objective(outputs, ys)
        grads = tape.gradient(loss, list(probes) + variables, unconnected_gradients=tf.UnconnectedGradients.ZERO)
        return loss, list(outputs), [tf.convert_to_tensor(g) for g in grads]

    def run(xs, probes, ys):
        with traced(probed):
            loss, outputs, grads = step(list(xs), list(probes), list(ys))
        return (loss.numpy(), [o.numpy() for o in outputs], [g.numpy() for g in grads[:count]],
                [g.numpy() for g in grads[count:]])

    return run


_READERS: dict = {}


def read_variables(variables: list) -> list[np.ndarray]:
    """The variables' values now, in one call (a variable updated later is copied on write by
    TensorFlow, never under an array read here)."""
    import tensorflow as tf

    from backends.tensorflow.gradients import tf_variable

    key = tuple(map(id, variables))
    if key not in _READERS:
        sources = [tf_variable(v) for v in variables]
        _READERS.clear()
        _READERS[key] = tf.function(lambda: [tf.identity(v) for v in sources], autograph=False)
    return [value.numpy() for value in _READERS[key]()]


def device() -> str:
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    return f"gpu ({len(gpus)})" if gpus else "cpu"


def versions(keras) -> dict:
    import tensorflow as tf

    return {"keras": keras.__version__, "tensorflow": tf.__version__}


def take_batch(model, args: tuple) -> tuple:
    """TensorFlow: ``train_function(iterator)``; the batch, and the arguments with an iterator yielding it."""
    import tensorflow as tf

    iterator = args[0]
    data = iterator.get_next()
    batch_size = tf.shape(tf.nest.flatten(data)[0], out_type=tf.int64)[0]
    replay = iter(tf.data.Dataset.from_tensor_slices(data).batch(batch_size))
    if replay.element_spec != iterator.element_spec:  # a fixed batch dimension: match it exactly
        replay = iter(tf.data.Dataset.from_tensors(data))
    return data, (replay, *args[1:]), nothing_to_put_back
