"""One layer's weights, one layer run alone, and every layer's gradients, for a model loaded
by backends.original_keras.loading (Keras 1 or 2 on Theano, learning phase fixed at 0).

Theano compiles each graph before running it: the function running a layer, and the one
computing the gradients, are compiled on first use and kept.
"""
from __future__ import annotations

import numpy as np

from backends.common.errors import ModelInputError
from kdiff.protocol.json_values import json_safe
from backends.original_keras.graph import functional_graph, model_layers, model_nodes


class LayerOps:
    def __init__(self, model, gradients):
        import keras

        self.model = model
        self.gradients = gradients  # the backend's gradients module (backends/theano/gradients.py)
        self._layers = {layer.name: layer for layer in model_layers(model)}
        self._run_functions = {}       # layer name -> compiled function of the layer alone
        self._backward_functions = {}  # (loss, targets' ndim and dtype) -> compiled gradient function
        self._layer_backward = {}      # layer name -> compiled backward of the layer alone (the latest only)
        self.keras1 = keras.__version__.startswith("1.")

    def weights(self, layer: str) -> list[tuple[str, np.ndarray]]:
        return [(variable.name, variable.get_value()) for variable in self._layers[layer].weights]

    def set_weights(self, layer: str, arrays: list[np.ndarray]) -> None:
        self._layers[layer].set_weights(arrays)  # the shared variables: compiled functions see the change

    def config(self, layer: str) -> dict:
        """The layer's config as this Keras (1 or 2) writes it, made JSON-safe."""
        return json_safe(self._layers[layer].get_config())

    def run(self, layer: str, inputs: list[np.ndarray]) -> list[np.ndarray]:
        """The layer's outputs for `inputs`, one array per input tensor of its first call."""
        if layer not in self._run_functions:
            self._run_functions[layer] = self._compile_run(self._layers[layer])
        function, input_count = self._run_functions[layer]
        if len(inputs) != input_count:
            raise ModelInputError(f"layer '{layer}' takes {input_count} input(s), {len(inputs)} given",
                                  "pass one array per input tensor of the layer")
        return function(list(inputs))

    def backward(self, inputs: list[np.ndarray], projections: list[np.ndarray], loss: str | None = None,
                 targets: list[np.ndarray] | None = None):
        """Per layer in describe_layers order: (name, [d loss / d output], [(weight name, d loss / d weight)])
        for loss = sum_k sum(model_output_k * projections[k]), or with `loss` (a Keras loss name) the
        batch mean of that loss on `targets` (one per output), summed over the outputs."""
        outputs = len(functional_graph(self.model).outputs)
        if loss is not None and len(targets or ()) != outputs:
            raise ModelInputError(f"the loss {loss!r} needs one label array per model output: the model has "
                                  f"{outputs}, {len(targets or ())} given", "pass --labels once per model output")
        key = (loss, tuple((t.ndim, t.dtype.str) for t in targets or ()))
        if key not in self._backward_functions:
            self._backward_functions[key] = self._compile_backward(loss, targets)
        grads = iter(self._backward_functions[key](list(inputs) + list(targets if loss else projections)))
        for layer, outputs in _layer_outputs(self.model):
            yield (layer.name, [next(grads) for _ in outputs],
                   [(variable.name, next(grads)) for variable in layer.weights])

    def layer_backward(self, layer: str, inputs: list[np.ndarray], output_gradients: list[np.ndarray]):
        """The layer's backward alone, cut out of the model's graph as run() is: for loss = sum_k
        sum(output_k * output_gradients[k]), (d loss / d each input, [(weight name, d loss / d weight)]);
        zeros for an input that is not floating point."""
        if layer not in self._layer_backward:
            self._layer_backward = {layer: self._compile_layer_backward(self._layers[layer])}
        function, input_count, output_count, floats = self._layer_backward[layer]
        if len(inputs) != input_count or len(output_gradients) != output_count:
            raise ModelInputError(f"layer '{layer}' takes {input_count} input(s) and gives {output_count} output(s): "
                                  f"{len(inputs)} input(s) and {len(output_gradients)} gradient(s) given",
                                  "pass one array per input tensor and one gradient per output of the layer")
        grads = iter(function(list(inputs) + list(output_gradients)))
        input_grads = [next(grads) if i in floats else np.zeros(x.shape, np.float32) for i, x in enumerate(inputs)]
        return input_grads, [(variable.name, next(grads)) for variable in self._layers[layer].weights]

    def _compile_layer_backward(self, layer):
        import theano
        from keras import backend as K

        node = model_nodes(self.model, layer)[0]
        placeholders = [tensor.type() for tensor in node.input_tensors]
        outputs = theano.clone(list(node.output_tensors), replace=dict(zip(node.input_tensors, placeholders)))
        given = [output.type() for output in outputs]
        value = sum(K.sum(output * grad) for output, grad in zip(outputs, given))
        floats = {i for i, p in enumerate(placeholders) if str(p.dtype).startswith("float")}
        wanted = [p for i, p in enumerate(placeholders) if i in floats] + list(layer.weights)
        # without ShapeOpt: under it the optimiser never ends on some of these small graphs (a ZeroPadding2D's
        # gradient with respect to its input); it only infers shapes, the arithmetic is the same
        mode = theano.compile.get_default_mode().excluding("ShapeOpt")
        function = theano.function(placeholders + given, self.gradients.gradients(value, wanted), mode=mode,
                                   allow_input_downcast=True, on_unused_input="ignore")
        return (lambda arrays: function(*arrays)), len(placeholders), len(outputs), floats

    def _compile_run(self, layer):
        """The layer's first call, cut out of the model's own graph: its input tensors replaced
        by fresh variables (Keras 1 refuses to call a Merge layer again)."""
        import theano
        from keras import backend as K

        node = model_nodes(self.model, layer)[0]
        placeholders = [tensor.type() for tensor in node.input_tensors]
        outputs = theano.clone(list(node.output_tensors), replace=dict(zip(node.input_tensors, placeholders)))
        return K.function(placeholders, outputs), len(placeholders)

    def _compile_backward(self, loss: str | None, targets: list[np.ndarray] | None):
        """One function: (model inputs, projections or targets) -> gradients with respect to every
        layer's outputs and weights, in backward()'s order."""
        from keras import backend as K

        from backends.original_keras.objectives import loss_function

        graph = functional_graph(self.model)
        if loss is None:
            extra = [K.placeholder(ndim=K.ndim(output), dtype=K.dtype(output)) for output in graph.outputs]
            value = sum(K.sum(output * projection) for output, projection in zip(graph.outputs, extra))
        else:
            loss_of = loss_function(loss, self.keras1)
            extra = [K.placeholder(ndim=target.ndim, dtype=str(target.dtype)) for target in targets]
            value = sum(K.mean(loss_of(target, output)) for target, output in zip(extra, graph.outputs))
        wanted = [t for layer, outputs in _layer_outputs(self.model) for t in [*outputs, *layer.weights]]
        # a layer whose output does not reach the model's outputs gets zeros
        grads = self.gradients.gradients(value, wanted)
        return K.function(list(graph.inputs) + extra, grads)


def _layer_outputs(model) -> list[tuple]:
    """(layer, its output tensors over its calls in the model), in describe_layers order."""
    return [(layer, [t for node in model_nodes(model, layer) for t in node.output_tensors])
            for layer in model_layers(model)]
