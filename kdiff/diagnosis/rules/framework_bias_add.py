"""A framework bug as a cause: Keras 3's TensorFlow backend adds a channels_first convolution's bias
along the wrong axis when the output's last axis (its width) has as many positions as the bias has
elements. ``keras/src/backend/tensorflow/numpy.py`` ``add`` turns an add whose second operand looks
like a bias into ``tf.nn.bias_add`` and picks NHWC whenever the last axis has the bias's length;
the conv's (1, filters, 1, 1) bias is then added along the width. Every Keras 3 convolution adds its
bias so: Conv1D/2D/3D, their transposed forms, DepthwiseConv1D/2D (bias of channels × multiplier) and
SeparableConv1D/2D. Seen in eager calls (a model called on arrays, as kdiff's worker does) of each;
in a traced ``predict`` too for Conv3D, the transposed, depthwise and separable convs, and for Conv2D
under ``jit_compile`` (a plain Conv1D/Conv2D ``predict`` is right: its graph fuses the bias add in the
conv's own layout), in Keras 3.0 through 3.15.1, the newest checked.

Proof: side B's conv is run with its bias added apart (the tensor's own ``+``, which broadcasts the
(1, filters, 1, 1) bias over the channels), on side A's inputs; the fix is that workaround."""
from __future__ import annotations

from kdiff.diagnosis.model import Candidate, LayerEvidence, kernel_of
from kdiff.diagnosis.rules.framework_releases import applies_to

ID = "framework-bias-add-axis"
FRAMEWORK = "tensorflow"
KERAS_VERSIONS = ((3, 0), (3, 15, 1))  # the releases it was seen in: every Keras 3 up to the newest checked
CONV_CLASSES = {"Conv1D", "Conv2D", "Conv3D", "Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose",
                "DepthwiseConv1D", "DepthwiseConv2D", "SeparableConv1D", "SeparableConv2D"}
BIAS_APART = "kdiff:bias_added_apart"  # understood by the Keras 3 worker (backends/modern_keras/layer_changes.py)


def candidates(evidence: LayerEvidence):
    config = evidence.b_config
    if evidence.class_name not in CONV_CLASSES or not applies_to(evidence.b_backend, evidence.b_versions, FRAMEWORK,
                                                                 KERAS_VERSIONS):
        return
    bias = next((weight for name, weight in evidence.b_weights if name.rsplit("/", 1)[-1].startswith("bias")), None)
    if config.get("data_format") != "channels_first" or not config.get("use_bias", True) or not evidence.a_outputs \
            or kernel_of(evidence.b_weights) is None or bias is None or evidence.a_outputs[0].shape[-1] != bias.size:
        return
    version = evidence.b_versions.get("keras")
    yield Candidate(
        cause=ID, overrides={BIAS_APART: True},
        fix=(f"A bug of Keras {version}'s TensorFlow backend, not of the port: '{evidence.b_layer}' is channels_first "
             f"and its output's last axis has {bias.size} positions, as many as its bias has elements, so "
             "keras.ops.add takes its bias for an NHWC bias and adds it along the width. Add the bias apart (a "
             "subclass whose call adds it with the tensor's own '+'), or build the layer channels_last; a written "
             "model keeps the bug."),
        code=("import keras\n\n"
              f"class {evidence.class_name}BiasApart(keras.layers.{evidence.class_name}):  # Keras {version}, TF\n"
              "    def call(self, inputs):\n"
              "        use_bias, activation = self.use_bias, self.activation\n"
              "        self.use_bias, self.activation = False, None\n"
              "        try:\n"
              "            outputs = super().call(inputs)\n"
              "        finally:\n"
              "            self.use_bias, self.activation = use_bias, activation\n"
              "        if use_bias:  # tf's own add broadcasts (1, channels, 1, ...) over the channels\n"
              "            outputs = outputs + keras.ops.reshape(self.bias, (1, -1) + (1,) * (len(outputs.shape) - 2))\n"
              "        return activation(outputs) if activation is not None else outputs"),
    )
