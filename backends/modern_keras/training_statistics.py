"""BatchNormalization's moving statistics in a training step (Keras 3, tf_keras).

Each BatchNormalization layer's input for the step's batch (inference mode, i.e. Dropout passing
through) is given to the layer itself in training mode, whose own update rule moves the
statistics (see backends/common/moving_statistics.py)."""
from __future__ import annotations

import numpy as np

from backends.modern_keras.graph import graph_nodes, node_inputs
from backends.common import moving_statistics
from backends.common.training_common import BATCH_NORMALIZATION


class MovingStatistics(moving_statistics.MovingStatistics):
    def __init__(self, keras, model, to_tensor):
        super().__init__()
        self.to_tensor = to_tensor
        tensors, seen = [], set()
        for layer, _, node in graph_nodes(model):
            if id(layer) in seen or type(layer).__name__ not in BATCH_NORMALIZATION:
                continue
            seen.add(id(layer))
            statistics = [("mean", getattr(layer, "moving_mean", None)),
                          ("variance", getattr(layer, "moving_variance", None))]
            if any(variable is None for _, variable in statistics):
                continue
            self.layers.append((layer, statistics))
            tensors.append(node_inputs(node)[0])
            for kind, variable in statistics:
                index = next(i for i, weight in enumerate(layer.weights) if weight is variable)
                path = getattr(variable, "path", None)
                self.described.append({"layer": layer.name, "index": index, "kind": kind,
                                       "name": path if isinstance(path, str) else variable.name.removesuffix(":0"),
                                       "shape": [int(d) for d in variable.shape],
                                       "momentum": float(layer.momentum), "epsilon": float(layer.epsilon)})
        self.capture = keras.Model(inputs=model.inputs, outputs=tensors) if tensors else None

    def _layer_inputs(self, inputs: list) -> list:
        outputs = self.capture.predict_on_batch(inputs[0] if len(inputs) == 1 else inputs)
        return outputs if isinstance(outputs, (list, tuple)) else [outputs]

    def _axes(self, layer) -> list[int]:
        axis = layer.axis
        return list(axis) if isinstance(axis, (list, tuple)) else [int(axis)]

    def _update(self, layer, x: np.ndarray, momentum: float) -> None:
        saved = layer.momentum
        layer.momentum = momentum
        try:
            layer(self.to_tensor(x), training=True)
        finally:
            layer.momentum = saved

    def _values(self) -> list:
        return [np.array(variable.numpy()) for variable in self._variables()]

    def _assign(self, values: list) -> None:
        for variable, value in zip(self._variables(), values):
            variable.assign(value)
