"""Which Keras and backend a job's model belongs to, and the capture its backend's module makes
of it (backends.registry: ``backends/<backend>/capture.py``; kdiff.protocol.capture). The
framework is the job's own, already imported: nothing here imports one."""
from __future__ import annotations

import importlib

from kdiff.protocol.capture import CaptureError


def keras_of(model):
    """The Keras the model was built with: the ``keras`` (3) or ``tf_keras`` module, already imported by the job."""
    return importlib.import_module(type(model).__module__.split(".")[0])


def backend_of(keras) -> str:
    """kdiff's name for the job's backend: tensorflow, jax, torch or tf-keras."""
    return "tf-keras" if keras.__name__ == "tf_keras" else keras.backend.backend()


def capture_module(model):
    """The capture module of ``model``'s backend (backends/<backend>/capture.py); CaptureError for a
    model of a backend kdiff does not attach to."""
    from backends import registry

    name = backend_of(keras_of(model))
    if name not in registry.BACKENDS:
        raise CaptureError(f"kdiff attach reads Keras 3 and tf_keras jobs; this model's backend is {name!r}")
    return registry.backend(name).module("capture")


def capture_of(model, loss=None):
    """The capture of ``model`` by its backend's capture module."""
    return capture_module(model).capture(model, loss)
