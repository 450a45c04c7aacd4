"""A framework bug as a cause: Keras 3's TensorFlow backend adds a channels_first conv's bias along
the wrong axis when the output's last axis (its width) has as many positions as the conv has
filters. ``keras/src/backend/tensorflow/numpy.py`` ``add`` turns an add whose second operand looks
like a bias into ``tf.nn.bias_add`` and picks NHWC whenever the last axis has the bias's length;
the conv's (1, filters, 1, 1) bias is then added along the width. Seen in eager calls (a model
called on arrays, as kdiff's worker does; a traced ``predict`` had the width unknown and was right)
in Keras 3.0 through 3.15.1, the newest checked.

Proof: side B's conv is run with its bias added apart (the tensor's own ``+``, which broadcasts the
(1, filters, 1, 1) bias over the channels), on side A's inputs; the fix is that workaround."""
from __future__ import annotations

from kdiff.diagnosis.model import Candidate, LayerEvidence, kernel_of

ID = "framework-bias-add-axis"
FRAMEWORK = "tensorflow"
KERAS_VERSIONS = ((3, 0), (3, 15, 1))  # the releases it was seen in: every Keras 3 up to the newest checked
CONV_CLASSES = {"Conv1D", "Conv2D", "Conv3D"}
BIAS_APART = "kdiff:bias_added_apart"  # understood by the Keras 3 worker (backends/modern_keras/layer_changes.py)


def applies_to(backend: str, versions: dict) -> bool:
    """Whether side B runs a framework release the bug is known in."""
    if backend != FRAMEWORK:
        return False
    try:
        version = tuple(int(part) for part in str(versions.get("keras", "")).split(".")[:3])
    except ValueError:
        return False
    low, high = KERAS_VERSIONS
    return low <= version <= high


def candidates(evidence: LayerEvidence):
    config = evidence.b_config
    if evidence.class_name not in CONV_CLASSES or not applies_to(evidence.b_backend, evidence.b_versions):
        return
    filters = config.get("filters")
    if config.get("data_format") != "channels_first" or not config.get("use_bias", True) or not evidence.a_outputs \
            or kernel_of(evidence.b_weights) is None or evidence.a_outputs[0].shape[-1] != filters:
        return
    version = evidence.b_versions.get("keras")
    yield Candidate(
        cause=ID, overrides={BIAS_APART: True},
        fix=(f"A bug of Keras {version}'s TensorFlow backend, not of the port: '{evidence.b_layer}' is channels_first "
             f"and its output's last axis has {filters} positions, as many as its filters, so keras.ops.add takes "
             "its bias for an NHWC bias and adds it along the width. Add the bias apart (a subclass whose call adds "
             "it with the tensor's own '+'), or build the conv channels_last; a written model keeps the bug."),
        code=("import keras\n\n"
              f"class {evidence.class_name}BiasApart(keras.layers.{evidence.class_name}):  # Keras {version}, TF\n"
              "    def call(self, inputs):\n"
              "        outputs = self.convolution_op(inputs, self.kernel)\n"
              "        if self.use_bias:  # tf's own add broadcasts (1, filters, 1, ...) over the channels\n"
              "            outputs = outputs + keras.ops.reshape(self.bias, (1, self.filters) + (1,) * self.rank)\n"
              "        return self.activation(outputs) if self.activation is not None else outputs"),
    )
