"""tf_keras's part of the in-job probe's pass: TensorFlow's, with batch normalization unfused
while the pass is traced (tf_keras's fused one has no gradient for its moving statistics)."""
from __future__ import annotations

import sys

from backends.modern_keras.capture import Capture
from backends.tensorflow import capture as tensorflow_capture
from backends.tf_keras.gradients import unfused_batch_normalization

read_variables = tensorflow_capture.read_variables
device = tensorflow_capture.device
versions = tensorflow_capture.versions   # tf_keras's own version, and TensorFlow's
take_batch = tensorflow_capture.take_batch  # fit's train_function(iterator), as TensorFlow's


def capture(model, loss=None):
    return Capture(model, loss, "tf-keras", sys.modules[__name__])


def compile_one_pass(one_pass):
    return tensorflow_capture.compile_one_pass(one_pass, unfused_batch_normalization)
