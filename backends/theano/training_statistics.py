"""BatchNormalization's moving statistics in a training step (Keras 2.3.1 and 1.2.2 on Theano).

The steps run in inference mode (the learning phase is fixed at 0), so the moving statistics
are updated apart: each BatchNormalization layer's input for the step's batch is fed to a
function made of the layer's own training-mode ``call`` and the updates it adds (Keras 2.3.1:
``K.moving_average_update`` of the mean and of the unbiased batch variance; Keras 1.2.2 mode 0:
of the mean and the variance it stores as ``running_std``). One function per momentum: a trial
builds the layer's update with another one."""
from __future__ import annotations

import numpy as np

from backends.theano.keras_loading import _graph, _layers, _model_nodes
from backends.training_common import BATCH_NORMALIZATION, StatisticsStep, batch_moments


class MovingStatistics:
    def __init__(self, model, keras1: bool):
        from keras import backend as K

        self.keras1 = keras1
        self.layers = []       # (layer, its input tensor, [(kind, variable)])
        self.described = []
        for layer in _layers(model):
            if type(layer).__name__ not in BATCH_NORMALIZATION or (keras1 and getattr(layer, "mode", 0) != 0):
                continue
            names = ("running_mean", "running_std") if keras1 else ("moving_mean", "moving_variance")
            statistics = [(kind, getattr(layer, name, None)) for kind, name in zip(("mean", "variance"), names)]
            nodes = _model_nodes(model, layer)
            if not nodes or any(variable is None for _, variable in statistics):
                continue
            self.layers.append((layer, nodes[0].input_tensors[0], statistics))
            for kind, variable in statistics:
                index = next(i for i, weight in enumerate(layer.weights) if weight is variable)
                self.described.append({"layer": layer.name, "index": index, "kind": kind, "name": variable.name,
                                       "shape": list(variable.get_value().shape),
                                       "momentum": float(layer.momentum), "epsilon": float(layer.epsilon)})
        tensors = [tensor for _, tensor, _ in self.layers]
        self.input_function = K.function(list(_graph(model).inputs), tensors) if tensors else None
        self.functions = {}    # (layer name, momentum) -> the layer's update function
        self.snapshot = None   # (values before, each layer's input) as the last step started

    def describe(self) -> list[dict]:
        return list(self.described)

    def step(self, inputs: list) -> StatisticsStep:
        """Update every layer's moving statistics from this batch, as training mode would."""
        if self.input_function is None:
            return StatisticsStep()
        layer_inputs = [np.asarray(x) for x in self.input_function(list(inputs))]
        before = self._values()
        self.snapshot = (before, layer_inputs)
        batch, samples = [], []
        for (layer, _, statistics), x in zip(self.layers, layer_inputs):
            mean, variance, count = batch_moments(x, [layer.axis])
            batch += [mean if kind == "mean" else variance for kind, _ in statistics]
            samples += [count] * len(statistics)
            self._function(layer, float(layer.momentum))([x])
        return StatisticsStep(before, self._values(), batch, samples)

    def trial(self, layers: dict) -> list:
        """The updates the last step would have made with each named layer's settings changed."""
        if self.snapshot is None:
            return []
        before, layer_inputs = self.snapshot
        current = self._values()
        self._assign(before)
        try:
            for (layer, _, _), x in zip(self.layers, layer_inputs):
                momentum = float(layers.get(layer.name, {}).get("momentum", layer.momentum))
                self._function(layer, momentum)([x])
            return [np.asarray(after, dtype=b.dtype) - b for b, after in zip(before, self._values())]
        finally:
            self._assign(current)

    def _function(self, layer, momentum: float):
        """K.function([layer input]) -> [] applying the updates the layer's training-mode call adds."""
        from keras import backend as K

        key = (layer.name, momentum)
        if key not in self.functions:
            tensor = next(t for l, t, _ in self.layers if l is layer)
            placeholder = K.placeholder(shape=(None,) + tuple(K.int_shape(tensor)[1:]), dtype=K.dtype(tensor))
            captured = []
            saved = layer.momentum
            layer.add_update = lambda updates, inputs=None: captured.extend(
                updates if isinstance(updates, list) else [updates])
            layer.momentum = momentum
            try:
                if self.keras1:
                    layer.call(placeholder)
                else:
                    layer.call(placeholder, training=True)
            finally:
                del layer.add_update
                layer.momentum = saved
            self.functions[key] = K.function([placeholder], [], updates=captured)
        return self.functions[key]

    def _variables(self) -> list:
        return [variable for _, _, statistics in self.layers for _, variable in statistics]

    def _values(self) -> list:
        return [np.array(variable.get_value()) for variable in self._variables()]

    def _assign(self, values: list) -> None:
        for variable, value in zip(self._variables(), values):
            variable.set_value(value)
