"""BatchNormalization normalising with each batch's own statistics (training mode) on side A at
inference (Keras 1 `mode=2`, or a layer called with training=True, which tf_keras honours at
inference and Keras 3's predict overrides), with its moving statistics on side B.

The other way round cannot be proven by re-running the layer: a tf_keras layer in training mode
has moved its moving statistics on every forward pass by the time it is diagnosed."""
from __future__ import annotations

from kdiff.diagnosis.model import Candidate, LayerEvidence

ID = "batchnorm-training-mode"


def candidates(evidence: LayerEvidence):
    if evidence.class_name != "BatchNormalization":
        return
    layer = evidence.b_layer
    yield Candidate(
        cause=ID,
        training=True,
        fix=(f"Side A normalises '{layer}' with each batch's own statistics (training mode) even at inference: "
             "call it with training=True; Keras 3's predict overrides a stored training=True, so there it takes "
             "a subclass whose call passes training=True to BatchNormalization.call."),
        code=("class BatchStatisticsNormalization(keras.layers.BatchNormalization):\n"
              "    def call(self, inputs, training=None, mask=None):\n"
              "        return super().call(inputs, training=True, mask=mask)\n"
              f'# build the model with BatchStatisticsNormalization in place of "{layer}"'),
    )
