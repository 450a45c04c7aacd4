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
import sys

from kdiff.probe.capture import capture_module
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
            if _steps_per_execution(self.model) != 1:
                raise RuntimeError("KerasProbe needs steps_per_execution=1 (one batch per step)")
            model = self.probe.model
            self._unwrapped = model.train_function
            take = capture_module(model).take_batch  # the backend's way into its train_function
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
