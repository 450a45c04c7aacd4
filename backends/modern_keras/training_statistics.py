"""BatchNormalization's moving statistics in a training step (Keras 3, tf_keras).

The steps run in inference mode, so the moving mean and variance are updated apart: each
BatchNormalization layer's input for the step's batch (inference mode, i.e. Dropout passing
through) is given to the layer itself in training mode, whose own update rule moves the
statistics. A trial re-runs that update from the step's starting values with another momentum."""
from __future__ import annotations

import numpy as np

from backends.modern_keras.loading import _graph_nodes, _node_inputs
from backends.training_common import BATCH_NORMALIZATION, StatisticsStep, batch_moments


class MovingStatistics:
    def __init__(self, keras, model, to_tensor):
        self.to_tensor = to_tensor
        self.layers = []       # (layer, [(kind, variable)]) of every BatchNormalization layer, in graph order
        self.described = []
        tensors, seen = [], set()
        for layer, _, node in _graph_nodes(model):
            if id(layer) in seen or type(layer).__name__ not in BATCH_NORMALIZATION:
                continue
            seen.add(id(layer))
            statistics = [("mean", getattr(layer, "moving_mean", None)),
                          ("variance", getattr(layer, "moving_variance", None))]
            if any(variable is None for _, variable in statistics):
                continue
            self.layers.append((layer, statistics))
            tensors.append(_node_inputs(node)[0])
            for kind, variable in statistics:
                index = next(i for i, weight in enumerate(layer.weights) if weight is variable)
                path = getattr(variable, "path", None)
                self.described.append({"layer": layer.name, "index": index, "kind": kind,
                                       "name": path if isinstance(path, str) else variable.name.removesuffix(":0"),
                                       "shape": [int(d) for d in variable.shape],
                                       "momentum": float(layer.momentum), "epsilon": float(layer.epsilon)})
        self.capture = keras.Model(inputs=model.inputs, outputs=tensors) if tensors else None
        self.snapshot = None   # (values before, each layer's input) as the last step started

    def describe(self) -> list[dict]:
        return list(self.described)

    def step(self, inputs: list) -> StatisticsStep:
        """Update every layer's moving statistics from this batch, as training mode would."""
        if self.capture is None:
            return StatisticsStep()
        layer_inputs = self.capture.predict_on_batch(inputs[0] if len(inputs) == 1 else list(inputs))
        if not isinstance(layer_inputs, (list, tuple)):
            layer_inputs = [layer_inputs]
        layer_inputs = [np.asarray(x) for x in layer_inputs]
        before = self._values()
        self.snapshot = (before, layer_inputs)
        batch, samples = [], []
        for (layer, statistics), x in zip(self.layers, layer_inputs):
            mean, variance, count = batch_moments(x, _axes(layer))
            batch += [mean if kind == "mean" else variance for kind, _ in statistics]
            samples += [count] * len(statistics)
            self._update(layer, x)
        return StatisticsStep(before, self._values(), batch, samples)

    def trial(self, layers: dict) -> list:
        """The updates the last step would have made with each named layer's settings changed."""
        if self.snapshot is None:
            return []
        before, layer_inputs = self.snapshot
        current = self._values()
        self._assign(before)
        try:
            for (layer, _), x in zip(self.layers, layer_inputs):
                saved = layer.momentum
                layer.momentum = float(layers.get(layer.name, {}).get("momentum", saved))
                try:
                    self._update(layer, x)
                finally:
                    layer.momentum = saved
            return [np.asarray(after, dtype=b.dtype) - b for b, after in zip(before, self._values())]
        finally:
            self._assign(current)

    def _update(self, layer, x: np.ndarray) -> None:
        layer(self.to_tensor(x), training=True)

    def _variables(self) -> list:
        return [variable for _, statistics in self.layers for _, variable in statistics]

    def _values(self) -> list:
        return [np.array(variable.numpy()) for variable in self._variables()]

    def _assign(self, values: list) -> None:
        for variable, value in zip(self._variables(), values):
            variable.assign(value)


def _axes(layer) -> list[int]:
    axis = layer.axis
    return list(axis) if isinstance(axis, (list, tuple)) else [int(axis)]
