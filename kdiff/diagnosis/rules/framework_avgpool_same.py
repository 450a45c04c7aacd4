"""A framework bug as a cause: Keras 3's torch backend averages padding into an average pooling with
``padding='same'`` where the padding is uneven (pool 3, stride 2 over an even length: 0 before, 1 after).
``keras/src/backend/torch/nn.py`` pads such an input itself with ``mode='replicate'`` (torch pads only
symmetrically) and then pools with ``count_include_pad=False``, which excludes only torch's own padding:
the replicated edge is averaged in as if it were data. TensorFlow, JAX and Theano-era Keras (Theano's
``average_exc_pad``) average over the cells inside the input only. Seen in Keras 3.15.1, the newest
checked; in AveragePooling1D/2D/3D, either data format, eager and in ``predict``.

Proof: side B's pooling re-run with the average taken apart (the sum over each window of the zero-padded
input over the count of its cells inside the input), on side A's inputs; the fix is that workaround."""
from __future__ import annotations

from kdiff.diagnosis.model import Candidate, LayerEvidence
from kdiff.diagnosis.rules.framework_releases import applies_to

ID = "framework-avgpool-same-padding"
FRAMEWORK = "torch"
KERAS_VERSIONS = ((3, 0), (3, 15, 1))  # releases before 3.15.1 not checked: the proof decides
POOL_CLASSES = {"AveragePooling1D", "AveragePooling2D", "AveragePooling3D"}
AVERAGE_APART = "kdiff:average_counted_apart"  # understood by the Keras 3 worker (backends/modern_keras/layer_changes.py)


def uneven_axes(shape: tuple, pool_size, strides, data_format: str) -> list[int]:
    """The spatial axes (of the input's shape, batch first) whose 'same' padding is uneven."""
    spatial = list(range(2, len(shape))) if data_format == "channels_first" else list(range(1, len(shape) - 1))
    def per_axis(value) -> list:
        return list(value) if isinstance(value, (list, tuple)) else [value] * len(spatial)

    pools = per_axis(pool_size)
    steps = [step or pool for step, pool in zip(per_axis(strides), pools)]  # (no strides: the pool's size)
    uneven = []
    for axis, pool, step in zip(spatial, pools, steps):
        size = shape[axis]
        total = max((-(-size // step) - 1) * step + pool - size, 0)
        if total % 2:
            uneven.append(axis)
    return uneven


def candidates(evidence: LayerEvidence):
    config = evidence.b_config
    if evidence.class_name not in POOL_CLASSES or config.get("padding") != "same" or not evidence.a_inputs \
            or not applies_to(evidence.b_backend, evidence.b_versions, FRAMEWORK, KERAS_VERSIONS):
        return
    axes = uneven_axes(evidence.a_inputs[0].shape, config.get("pool_size"), config.get("strides"),
                       config.get("data_format", "channels_last"))
    if not axes:
        return
    version = evidence.b_versions.get("keras")
    yield Candidate(
        cause=ID, overrides={AVERAGE_APART: True},
        fix=(f"A bug of Keras {version}'s torch backend, not of the port: '{evidence.b_layer}' pools with "
             f"padding='same', which is uneven along axis {', '.join(map(str, axes))} here, and the torch backend "
             "pads such an input with its own edge values (mode='replicate') and averages them in. Take the "
             "average apart (each window's sum over the zero-padded input divided by its count of cells inside "
             "the input), or pad so that the padding is even; a written model keeps the bug."),
        code=("import keras\nfrom keras import ops\n\n"
              f"class {evidence.class_name}Exact(keras.layers.{evidence.class_name}):  # Keras {version}, torch\n"
              "    def call(self, inputs):\n"
              "        first = self.data_format == 'channels_first'\n"
              "        spatial = range(2, inputs.ndim) if first else range(1, inputs.ndim - 1)\n"
              "        pads = [(0, 0)] * inputs.ndim\n"
              "        for axis, pool, step in zip(spatial, self.pool_size, self.strides):\n"
              "            size = inputs.shape[axis]\n"
              "            total = max((-(-size // step) - 1) * step + pool - size, 0)\n"
              "            pads[axis] = (total // 2, total - total // 2)\n"
              "        def pooled(x):  # each window's sum over the cells inside the input, over their count\n"
              "            return ops.average_pool(ops.pad(x, pads), self.pool_size, self.strides, 'valid',\n"
              "                                    self.data_format)\n"
              "        return pooled(inputs) / pooled(ops.ones_like(inputs))"),
    )
