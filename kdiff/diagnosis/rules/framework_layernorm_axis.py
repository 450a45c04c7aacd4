"""A framework bug as a cause: Keras 3's torch backend normalises a LayerNormalization over the wrong axes when
the layer's axes are adjacent but not the trailing ones (axis=1 of a (batch, C, T) or (batch, C, H, W) tensor: a
channels_first port that normalises over its channels). ``keras/src/ops/nn.py`` (_layer_normalization) calls
torch's ``F.layer_norm`` for any such run of axes, with their sizes as ``normalized_shape``; torch always
normalises over the trailing axes of that shape. Where the sizes match (C == W) it normalises over the width,
silently; where they do not, torch raises and the model does not load on torch at all. TensorFlow and JAX
compute it with moments over the layer's own axes. Seen in Keras 3.15.1, the newest checked.

Proof: side B's layer re-run normalised with its mean and variance over its own axes, on side A's inputs; the
fix is that workaround (a subclass; a written model keeps the bug)."""
from __future__ import annotations

from kdiff.diagnosis.model import Candidate, LayerEvidence
from kdiff.diagnosis.rules.framework_releases import applies_to

ID = "framework-layernorm-axis"
FRAMEWORK = "torch"
KERAS_VERSIONS = ((3, 0), (3, 15, 1))  # releases before 3.15.1 not checked: the proof decides
NORMALIZED_APART = "kdiff:normalized_apart"  # understood by the Keras 3 worker (backends/modern_keras/layer_changes.py)


def normalized_axes(axis, rank: int) -> list[int]:
    return sorted(a % rank for a in (axis if isinstance(axis, (list, tuple)) else [axis]))


def candidates(evidence: LayerEvidence):
    if evidence.class_name != "LayerNormalization" or not evidence.a_inputs \
            or not applies_to(evidence.b_backend, evidence.b_versions, FRAMEWORK, KERAS_VERSIONS):
        return
    rank = evidence.a_inputs[0].ndim
    axes = normalized_axes(evidence.b_config.get("axis", -1), rank)
    trailing = list(range(rank - len(axes), rank))
    if axes == trailing or axes != list(range(axes[0], axes[0] + len(axes))):
        return  # the trailing axes (torch's kernel is right), or not adjacent (Keras takes the moments path)
    version = evidence.b_versions.get("keras")
    yield Candidate(
        cause=ID, overrides={NORMALIZED_APART: True},
        fix=(f"A bug of Keras {version}'s torch backend, not of the port: '{evidence.b_layer}' normalises over "
             f"axis {', '.join(map(str, axes))}, which are not the trailing axes, and the torch backend hands them to "
             f"torch's F.layer_norm, which normalises over the trailing axes {', '.join(map(str, trailing))} of "
             "the same sizes instead. Normalise with the mean and variance over the layer's own axes (or move "
             "those axes last); a written model keeps the bug."),
        code=("import keras\nfrom keras import ops\n\n"
              f"class LayerNormalizationOverItsAxes(keras.layers.LayerNormalization):  # Keras {version}, torch\n"
              "    def call(self, inputs):\n"
              "        axes = [a % inputs.ndim for a in (self.axis if isinstance(self.axis, (list, tuple)) else [self.axis])]\n"
              "        shape = [inputs.shape[d] if d in axes else 1 for d in range(inputs.ndim)]\n"
              "        mean, variance = ops.moments(inputs, axes=axes, keepdims=True)\n"
              "        outputs = (inputs - mean) * ops.rsqrt(variance + self.epsilon)\n"
              "        if self.scale:\n"
              "            outputs = outputs * ops.reshape(self.gamma, shape)\n"
              "        if self.center:\n"
              "            outputs = outputs + ops.reshape(self.beta, shape)\n"
              "        return outputs"),
    )
