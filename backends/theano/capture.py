"""The in-job probe does not attach to a job of the original Keras on Theano: kdiff attach reads
Keras 3 (any backend) and tf_keras jobs; compare a Theano-era model offline with ``kdiff``. The
template's capture functions are all here (backends.modern_keras.capture.CAPTURE_FUNCTIONS), so
the probe finds this module like any other and every one of them says so."""
from __future__ import annotations

from kdiff.protocol.capture import CaptureError

REFUSAL = ("kdiff attach attaches to Keras 3 and tf_keras training jobs, not to the original Keras "
           "on Theano: compare the model offline with 'kdiff MODEL WEIGHTS SAMPLE'")


def capture(model, loss=None):
    raise CaptureError(REFUSAL)


def compile_one_pass(one_pass):
    raise CaptureError(REFUSAL)


def read_variables(variables: list) -> list:
    raise CaptureError(REFUSAL)


def device() -> str:
    raise CaptureError(REFUSAL)


def versions(keras) -> dict:
    raise CaptureError(REFUSAL)


def take_batch(model, args: tuple) -> tuple:
    raise CaptureError(REFUSAL)
