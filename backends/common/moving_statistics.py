"""BatchNormalization's moving statistics in a training step, the part every worker shares.

The steps run in inference mode, so the moving mean and variance are updated apart: each
BatchNormalization layer's input for the step's batch is given to the layer's own training-mode
update rule (backends/<framework>/training_statistics.py says how). A trial re-runs those
updates from the step's starting values with other settings (another momentum)."""
from __future__ import annotations

import numpy as np

from backends.common.training_common import StatisticsStep, batch_moments


class MovingStatistics:
    """Subclasses fill ``layers`` and ``described`` and the hooks below."""

    def __init__(self):
        self.layers = []       # (layer, [(kind, variable)]) of every BatchNormalization layer, in graph order
        self.described = []    # per statistic: layer, index, kind, name, shape, momentum, epsilon
        self.snapshot = None   # (values before, each layer's input) as the last step started

    def describe(self) -> list[dict]:
        return list(self.described)

    def step(self, inputs: list) -> StatisticsStep:
        """Update every layer's moving statistics from this batch, as training mode would."""
        if not self.layers:
            return StatisticsStep()
        layer_inputs = [np.asarray(x) for x in self._layer_inputs(list(inputs))]
        before = self._values()
        self.snapshot = (before, layer_inputs)
        batch, samples = [], []
        for (layer, statistics), x in zip(self.layers, layer_inputs):
            mean, variance, count = batch_moments(x, self._axes(layer))
            batch += [mean if kind == "mean" else variance for kind, _ in statistics]
            samples += [count] * len(statistics)
            self._update(layer, x, float(layer.momentum))
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
                self._update(layer, x, float(layers.get(layer.name, {}).get("momentum", layer.momentum)))
            return [np.asarray(after, dtype=b.dtype) - b for b, after in zip(before, self._values())]
        finally:
            self._assign(current)

    def _variables(self) -> list:
        return [variable for _, statistics in self.layers for _, variable in statistics]

    # ---- hooks --------------------------------------------------------------------------
    def _layer_inputs(self, inputs: list) -> list:
        """Each layer's input for the model inputs, in inference mode."""
        raise NotImplementedError

    def _axes(self, layer) -> list[int]:
        """The layer's channel axes (the statistics are over every other axis)."""
        raise NotImplementedError

    def _update(self, layer, x: np.ndarray, momentum: float) -> None:
        """Apply the layer's own training-mode update of its statistics for input ``x``."""
        raise NotImplementedError

    def _values(self) -> list:
        raise NotImplementedError

    def _assign(self, values: list) -> None:
        raise NotImplementedError
