"""The in-job probe does not attach to a job of the original Keras on Theano: kdiff attach reads
Keras 3 (any backend) and tf_keras jobs; compare a Theano-era model offline with ``kdiff``."""
from __future__ import annotations

from kdiff.protocol.capture import CaptureError


def capture(model, loss=None):
    raise CaptureError("kdiff attach attaches to Keras 3 and tf_keras training jobs, not to the original Keras "
                       "on Theano: compare the model offline with 'kdiff MODEL WEIGHTS SAMPLE'")


def take_batch(model, args: tuple) -> tuple:
    return capture(model)
