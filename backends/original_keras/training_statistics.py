"""BatchNormalization's moving statistics in a training step (Keras 2.3.1 and 1.2.2 on Theano).

The steps run in inference mode (the learning phase is fixed at 0), so the moving statistics
are updated apart: each BatchNormalization layer's input for the step's batch is fed to a
function made of the layer's own training-mode ``call`` and the updates it adds (Keras 2.3.1:
``K.moving_average_update`` of the mean and of the unbiased batch variance; Keras 1.2.2 mode 0:
of the mean and the variance it stores as ``running_std``). One function per momentum: a trial
builds the layer's update with another one."""
from __future__ import annotations

import numpy as np

from backends.original_keras.graph import functional_graph, model_layers, model_nodes
from backends.common import moving_statistics
from backends.common.training_common import BATCH_NORMALIZATION


class MovingStatistics(moving_statistics.MovingStatistics):
    def __init__(self, model, keras1: bool):
        from keras import backend as K

        super().__init__()
        self.keras1 = keras1
        self.tensors = {}      # layer name -> its input tensor in the model
        for layer in model_layers(model):
            if type(layer).__name__ not in BATCH_NORMALIZATION or (keras1 and getattr(layer, "mode", 0) != 0):
                continue
            names = ("running_mean", "running_std") if keras1 else ("moving_mean", "moving_variance")
            statistics = [(kind, getattr(layer, name, None)) for kind, name in zip(("mean", "variance"), names)]
            nodes = model_nodes(model, layer)
            if not nodes or any(variable is None for _, variable in statistics):
                continue
            self.layers.append((layer, statistics))
            self.tensors[layer.name] = nodes[0].input_tensors[0]
            for kind, variable in statistics:
                index = next(i for i, weight in enumerate(layer.weights) if weight is variable)
                self.described.append({"layer": layer.name, "index": index, "kind": kind, "name": variable.name,
                                       "shape": list(variable.get_value().shape),
                                       "momentum": float(layer.momentum), "epsilon": float(layer.epsilon)})
        tensors = [self.tensors[layer.name] for layer, _ in self.layers]
        self.input_function = K.function(list(functional_graph(model).inputs), tensors) if tensors else None
        self.functions = {}    # (layer name, momentum) -> the layer's update function

    def _layer_inputs(self, inputs: list) -> list:
        return self.input_function(inputs)

    def _axes(self, layer) -> list[int]:
        return [layer.axis]

    def _update(self, layer, x: np.ndarray, momentum: float) -> None:
        self._function(layer, momentum)([x])

    def _function(self, layer, momentum: float):
        """K.function([layer input]) -> [] applying the updates the layer's training-mode call adds."""
        from keras import backend as K

        key = (layer.name, momentum)
        if key not in self.functions:
            tensor = self.tensors[layer.name]
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

    def _values(self) -> list:
        return [np.array(variable.get_value()) for variable in self._variables()]

    def _assign(self, values: list) -> None:
        for variable, value in zip(self._variables(), values):
            variable.set_value(value)
