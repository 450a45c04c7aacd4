"""``KerasProbe``: the probe as a Keras callback, for ``model.fit``.

Keras callbacks are not shown the batch, so the callback wraps ``model.train_function`` (the
step ``fit`` calls once per batch) for the length of ``fit``: each call is a step boundary,
and only when a coordinator needs the batch is it taken from the step's own input and handed
back unchanged:
  - PyTorch backend: the step receives ``[batch]``;
  - TensorFlow backend and tf_keras: the step receives an iterator; the batch is taken from it
    and the step is given a one-batch iterator of the same element spec instead (the same
    compiled step runs, on the same values).
On the JAX backend ``fit`` keeps the weights outside the model while it runs, so a callback
cannot read them: use ``Probe`` in a loop of your own there."""
from __future__ import annotations

import functools
import sys

from kdiff.probe.capture import keras_of
from kdiff.probe.probe import Probe


def KerasProbe(endpoint: str, keys=None, loss=None):
    """A Keras callback serving kdiff coordinators at ``endpoint`` while ``fit`` runs."""
    keras = sys.modules.get("keras") or sys.modules.get("tf_keras")
    if keras is None:
        raise ImportError("import keras (or tf_keras) before creating a KerasProbe")
    return _callback_class(keras)(endpoint, keys, loss)


@functools.cache
def _callback_class(keras):
    class KerasProbeCallback(keras.callbacks.Callback):
        def __init__(self, endpoint, keys, loss):
            super().__init__()
            self.probe = Probe(None, endpoint, keys, loss)
            self._unwrapped = None

        @property
        def endpoint(self) -> str:
            return self.probe.endpoint

        def on_train_begin(self, logs=None):
            self.probe.model = self.model
            model_keras = keras_of(self.model)
            backend = "tf-keras" if model_keras.__name__ == "tf_keras" else model_keras.backend.backend()
            if backend == "jax":
                raise RuntimeError("KerasProbe cannot read the weights during fit on the JAX backend; "
                                   "use kdiff.probe.Probe in a training loop of your own")
            if _steps_per_execution(self.model) != 1:
                raise RuntimeError("KerasProbe needs steps_per_execution=1 (one batch per step)")
            self._unwrapped = self.model.train_function
            take = _take_from_data if backend == "torch" else _take_from_iterator
            self.model.train_function = functools.partial(_step_with_probe, self.probe, self._unwrapped, take)

        def on_train_end(self, logs=None):
            if self._unwrapped is not None:
                self.model.train_function = self._unwrapped
                self._unwrapped = None
            self.probe.close()

    return KerasProbeCallback


def _steps_per_execution(model) -> int:
    """Keras 3 has ``steps_per_execution``; tf_keras keeps it in a variable, ``_steps_per_execution``."""
    value = getattr(model, "steps_per_execution", None) or getattr(model, "_steps_per_execution", None) or 1
    return int(value.numpy()) if hasattr(value, "numpy") else int(value)


def _step_with_probe(probe: Probe, train_function, take, *args):
    taken = {}

    def batch():
        taken["batch"], taken["args"] = take(args)
        return taken["batch"]

    probe.step(batch)
    return train_function(*taken.get("args", args))


def _take_from_data(args: tuple) -> tuple:
    """PyTorch: ``train_function([batch])``."""
    return args[0][0], args


def _take_from_iterator(args: tuple) -> tuple:
    """TensorFlow: ``train_function(iterator)``; the batch, and the arguments with an iterator yielding it."""
    import tensorflow as tf

    iterator = args[0]
    data = iterator.get_next()
    batch_size = tf.shape(tf.nest.flatten(data)[0], out_type=tf.int64)[0]
    replay = iter(tf.data.Dataset.from_tensor_slices(data).batch(batch_size))
    if replay.element_spec != iterator.element_spec:  # a fixed batch dimension: match it exactly
        replay = iter(tf.data.Dataset.from_tensors(data))
    return data, (replay, *args[1:])
