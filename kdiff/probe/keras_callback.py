"""``KerasProbe``: the probe as a Keras callback, for ``model.fit``.

Keras callbacks are not shown the batch, so the callback wraps ``model.train_function`` (the
step ``fit`` calls once per batch) for the length of ``fit``: each call is a step boundary,
and only when a coordinator needs the batch is it taken from the step's own input and handed
back unchanged:
  - PyTorch backend: the step receives ``[batch]``;
  - TensorFlow backend and tf_keras: the step receives an iterator; the batch is taken from it
    and the step is given a one-batch iterator of the same element spec instead (the same
    compiled step runs, on the same values);
  - JAX backend: the step receives ``(state, iterator)``. ``fit`` keeps the training state (weights,
    optimizer slots, metrics) in its own arrays during an epoch and writes it back to the model's
    variables only at the end (keras/src/backend/jax/trainer.py, ``jax_state_sync``), so the
    variables are stale or emptied mid-epoch. When the probe needs the model, the variables are
    given copies of ``state`` -- the state this very step starts from -- for the length of the
    capture, and then put back exactly as ``fit`` left them (its ``_jax_state`` and
    ``_jax_state_synced`` too). The step itself then runs on the untouched ``state`` and the batch
    taken from the iterator (handed back in front of it).
The callback never reads ``self.model`` during ``fit`` (on JAX, Keras's ``Callback.model``
forces a state sync): the probe holds the model from ``on_train_begin``."""
from __future__ import annotations

import functools
import itertools
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
            if _steps_per_execution(self.model) != 1:
                raise RuntimeError("KerasProbe needs steps_per_execution=1 (one batch per step)")
            model = self.probe.model
            self._unwrapped = model.train_function
            take = {"torch": _take_from_data, "jax": _take_from_jax}.get(backend, _take_from_iterator)
            model.train_function = functools.partial(_step_with_probe, self.probe, self._unwrapped, take)

        def on_train_end(self, logs=None):
            if self._unwrapped is not None:
                self.probe.model.train_function = self._unwrapped
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
        taken["batch"], taken["args"], taken["restore"] = take(probe.model, args)
        return taken["batch"]

    try:
        probe.step(batch)
    finally:
        if "restore" in taken:
            taken["restore"]()
    return train_function(*taken.get("args", args))


def _nothing() -> None:
    pass


def _take_from_data(model, args: tuple) -> tuple:
    """PyTorch: ``train_function([batch])``."""
    return args[0][0], args, _nothing


def _take_from_jax(model, args: tuple) -> tuple:
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


def _take_from_iterator(model, args: tuple) -> tuple:
    """TensorFlow: ``train_function(iterator)``; the batch, and the arguments with an iterator yielding it."""
    import tensorflow as tf

    iterator = args[0]
    data = iterator.get_next()
    batch_size = tf.shape(tf.nest.flatten(data)[0], out_type=tf.int64)[0]
    replay = iter(tf.data.Dataset.from_tensor_slices(data).batch(batch_size))
    if replay.element_spec != iterator.element_spec:  # a fixed batch dimension: match it exactly
        replay = iter(tf.data.Dataset.from_tensors(data))
    return data, (replay, *args[1:]), _nothing
