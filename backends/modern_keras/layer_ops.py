"""One layer's weights, one layer run alone, and every layer's gradients, for a model loaded
by backends.modern_keras.loading.

`keras` is the module the worker imported (Keras 3 on any backend, or tf_keras);
`gradients` is the backend's own gradients module (backends/<backend>/gradients.py).
"""
from __future__ import annotations

import numpy as np

from backends.common.errors import ModelInputError
from backends.modern_keras.graph import (data_inputs, flat, graph_nodes, layer_calls, mask_only_nodes, node_inputs, node_outputs,
                                         weight_name)
from backends.modern_keras.loading import forward_all


class LayerOps:
    def __init__(self, keras, model, gradients):
        self.keras = keras
        self.model = model
        self.gradients = gradients
        self._first_nodes = {}    # layer name -> the layer's first call in the model
        self._probed = None       # (probe model, {id(layer output tensor): probe index}), built once
        self._zero_probes = {}    # input shapes -> the probes' zero values (framework tensors), made once
        self._alone = {}          # layer name -> a model of the layer's first call alone (layer_backward)

    def weights(self, layer: str) -> list[tuple[str, np.ndarray]]:
        return [(weight_name(variable), np.asarray(variable.numpy()))
                for variable in self.model.get_layer(layer).weights]

    def set_weights(self, layer: str, arrays: list[np.ndarray]) -> None:
        self.model.get_layer(layer).set_weights(arrays)

    def run(self, layer: str, inputs: list[np.ndarray]) -> list[np.ndarray]:
        """The layer's outputs for `inputs`, one array per input tensor of its first call,
        called with that call's other arguments, in inference mode as the model's forward pass
        runs it."""
        node = self._first_node(layer)
        tensors = data_inputs(node)  # (a mask the model feeds the layer is not given: run alone, it gets none)
        if len(inputs) != len(tensors):
            raise ModelInputError(f"layer '{layer}' takes {len(tensors)} input(s), {len(inputs)} given",
                                  "pass one array per input tensor of the layer")
        args, kwargs = call_arguments(node, {id(t): x for t, x in zip(tensors, inputs)})
        outputs = self.model.get_layer(layer)(*args, **self.as_in_forward(kwargs))
        return [self._numpy(output) for output in flat(outputs)]

    def layer_backward(self, layer: str, inputs: list[np.ndarray], output_gradients: list[np.ndarray]):
        """The layer's backward alone, as run() runs it: for loss = sum_k sum(output_k * output_gradients[k]),
        (d loss / d each input, [(weight name, d loss / d weight)]); zeros for an input that is not
        floating point. The same backend's autodiff as backward() (the layer made a model of its own)."""
        from backends.modern_keras.objectives import objective

        alone = self._alone_model(layer)
        if len(inputs) != len(alone.inputs) or len(output_gradients) != len(alone.outputs):
            raise ModelInputError(f"layer '{layer}' takes {len(alone.inputs)} input(s) and gives {len(alone.outputs)} "
                                  f"output(s): {len(inputs)} input(s) and {len(output_gradients)} gradient(s) given",
                                  "pass one array per input tensor and one gradient per output of the layer")
        floats = [i for i, x in enumerate(inputs) if x.dtype.kind == "f"]
        steps = self.gradients.differentiate(alone, list(inputs), floats, objective(self.keras, output_gradients))
        next(steps)
        input_grads, weight_grads = next(steps)
        found = dict(zip(floats, input_grads))
        by_variable = {id(variable): grad for variable, grad in zip(alone.weights, weight_grads)}
        return ([np.asarray(found[i]) if i in found else np.zeros(x.shape, np.float32)
                 for i, x in enumerate(inputs)],
                [(weight_name(variable), np.asarray(by_variable[id(variable)]))
                 for variable in self.model.get_layer(layer).weights])

    def _alone_model(self, layer: str):
        """The layer's first call on fresh inputs of its input tensors' shapes, with that call's other
        arguments (as run() calls it), as a model."""
        if layer not in self._alone:
            keras = self.keras
            node = self._first_node(layer)
            tensors = data_inputs(node)
            fresh = {id(t): keras.Input(batch_shape=t.shape, dtype=t.dtype, name=f"kdiff_alone_{i}")
                     for i, t in enumerate(tensors)}
            args, kwargs = call_arguments(node, fresh)
            outputs = flat(self.model.get_layer(layer)(*args, **self.as_in_forward(kwargs)))
            self._alone = {layer: keras.Model([fresh[id(t)] for t in tensors], outputs)}  # (the latest only)
        return self._alone[layer]

    def as_in_forward(self, kwargs: dict) -> dict:
        """A call's keyword arguments with the training flag the model's forward pass gives the layer:
        a training=True stored in the graph holds in tf_keras; Keras 3's model call passes
        training=False over it."""
        return {**kwargs, "training": False} if hasattr(self.keras, "ops") else {"training": False, **kwargs}

    def backward(self, inputs: list[np.ndarray], projections: list[np.ndarray], loss: str | None = None,
                 targets: list[np.ndarray] | None = None):
        """Per layer in describe_layers order: (name, [d loss / d output], [(weight name, d loss / d weight)])
        in inference mode, for loss = sum_k sum(model_output_k * projections[k]), or with `loss` (a
        Keras loss name) the batch mean of that loss on `targets` (one per output), summed."""
        _check_targets(loss, targets, len(self.model.outputs))
        steps = self._differentiate(inputs, projections, loss, targets)
        next(steps)  # the outputs
        yield from self._gradients_by_layer(*next(steps))

    def forward_backward(self, inputs: list[np.ndarray], projections: list[np.ndarray], loss: str | None = None,
                         targets: list[np.ndarray] | None = None):
        """Every layer's outputs and backward's gradients, from one pass: ("output", name, [outputs]) per
        layer, as soon as the forward pass is done, then ("gradient", name, [d loss / d output],
        [(weight name, d loss / d weight)]) per layer. Where the framework cannot run the model forward
        under differentiation, a plain forward pass's outputs come first, then its error; where it
        cannot differentiate, the error follows the outputs (the forward diff stands either way)."""
        _check_targets(loss, targets, len(self.model.outputs))
        steps = self._differentiate(inputs, projections, loss, targets)
        try:
            outputs = next(steps)
        except Exception:
            for name, values in forward_all(self.model, inputs):
                yield "output", name, values
            raise
        position = 0
        for layer, tensors, _ in layer_calls(self.model):
            yield "output", layer.name, [self._numpy(output) for output in outputs[position:position + len(tensors)]]
            position += len(tensors)
        outputs = None
        for name, output_grads, weight_grads in self._gradients_by_layer(*next(steps)):
            yield "gradient", name, output_grads, weight_grads

    def _differentiate(self, inputs, projections, loss, targets):
        """One pass of the probed model, in two steps: yields every layer's outputs in describe_layers order
        (tensors) once the forward pass is done, then (d loss / d every layer output, by probe index) and
        (d loss / d weight, by id of the variable)."""
        from backends.modern_keras.objectives import objective

        probe_model, _ = self._probe_model()
        probes = self._probe_values(inputs)
        model_outputs = len(self.model.outputs)
        loss_of = objective(self.keras, projections, loss, targets)
        steps = self.gradients.differentiate(
            probe_model, list(inputs) + probes, list(range(len(inputs), len(inputs) + len(probes))),
            lambda outputs: loss_of(outputs[:model_outputs]))  # the rest are the layer outputs, as they were
        yield next(steps)[model_outputs:]
        probe_grads, weight_grads = next(steps)
        yield probe_grads, {id(variable): grad for variable, grad in zip(probe_model.weights, weight_grads)}

    def _gradients_by_layer(self, probe_grads, grad_by_variable):
        _, probe_index = self._probe_model()
        for layer, outputs, _ in layer_calls(self.model):
            yield (layer.name,
                   [probe_grads[probe_index[id(tensor)]] for tensor in outputs],
                   [(weight_name(variable), grad_by_variable[id(variable)]) for variable in layer.weights])

    def _probe_values(self, inputs: list[np.ndarray]) -> list:
        """The probes' values (zeros shaped like the layer outputs, in probe order), as framework tensors
        kept for the next pass on inputs of these shapes."""
        key = tuple(x.shape for x in inputs)
        if key in self._zero_probes:
            return self._zero_probes[key]
        _, probe_index = self._probe_model()
        probes = [None] * len(probe_index)
        for tensor, zeros in self._zeros_like_outputs(inputs):
            probes[probe_index[id(tensor)]] = zeros
        if hasattr(self.keras, "ops"):  # Keras 3: a tensor of the backend's (tf_keras converts numpy itself)
            probes = [self.keras.ops.convert_to_tensor(zeros) for zeros in probes]
        self._zero_probes = {key: probes}  # (only the latest shapes: a layer output's zeros can be large)
        return probes

    def _zeros_like_outputs(self, inputs: list[np.ndarray]):
        """(layer output tensor, zeros of its shape for these inputs) for every layer output: from
        the graph's shapes with the batch filled in, or, where another axis is open (a sequence of
        any length), from running the model once."""
        batch = inputs[0].shape[0]
        calls = [(tensor, tuple(tensor.shape)) for _, tensors, _ in layer_calls(self.model) for tensor in tensors]
        shapes = [(batch, *shape[1:]) if shape and shape[0] is None else shape for _, shape in calls]
        if all(None not in shape for shape in shapes):
            return [(tensor, np.zeros(shape, _numpy_dtype(tensor.dtype))) for (tensor, _), shape in zip(calls, shapes)]
        return [(tensor, np.zeros_like(output))
                for (_, tensors, _), (_, outputs) in zip(layer_calls(self.model), forward_all(self.model, inputs))
                for tensor, output in zip(tensors, outputs)]

    def _first_node(self, layer: str):
        if layer not in self._first_nodes:
            self._first_nodes[layer] = next(node for candidate, _, node in graph_nodes(self.model)
                                            if candidate.name == layer)
        return self._first_nodes[layer]

    def _probe_model(self):
        """The model rebuilt from its own layers with a zero-valued extra input added to every
        layer output: the gradient with respect to that input is the gradient with respect
        to the layer output (a Keras model cannot differentiate by its intermediate tensors).
        Its outputs are the model's, then every layer's own outputs (before the zero is added)
        in describe_layers order, so that one pass gives both."""
        if self._probed is None:
            keras = self.keras
            rebuilt = {id(t): keras.Input(batch_shape=t.shape, dtype=t.dtype, name=f"kdiff_input_{i}")
                       for i, t in enumerate(self.model.inputs)}
            probes, probe_index, layer_outputs = [], {}, {}
            masks = mask_only_nodes(self.model)
            for layer, node_index, node in graph_nodes(self.model):
                args, kwargs = call_arguments(node, rebuilt)
                for original, output in zip(node_outputs(node), flat(layer(*args, **kwargs))):
                    if (id(layer), node_index) in masks:   # a mask's computation: rebuilt, not probed
                        rebuilt[id(original)] = output
                        continue
                    probe = keras.Input(batch_shape=output.shape, dtype=output.dtype,
                                        name=f"kdiff_probe_{len(probes)}")
                    probe_index[id(original)] = len(probes)
                    layer_outputs[id(original)] = output
                    rebuilt[id(original)] = keras.layers.Add(name=f"kdiff_probed_{len(probes)}")([output, probe])
                    probes.append(probe)
            inputs = [rebuilt[id(t)] for t in self.model.inputs] + probes
            every_layer = [layer_outputs[id(t)] for _, tensors, _ in layer_calls(self.model) for t in tensors]
            self._probed = (keras.Model(inputs, [rebuilt[id(t)] for t in self.model.outputs] + every_layer),
                            probe_index)
        return self._probed

    def _numpy(self, tensor) -> np.ndarray:
        if hasattr(self.keras, "ops"):  # Keras 3: also detaches torch tensors, copies from GPUs
            return self.keras.ops.convert_to_numpy(tensor)
        return np.asarray(tensor)


def _numpy_dtype(dtype) -> np.dtype:
    """A Keras 3 dtype name, or a tf_keras tensor's tf.DType, as numpy's."""
    return np.dtype(getattr(dtype, "as_numpy_dtype", dtype))


def _check_targets(loss: str | None, targets: list | None, outputs: int) -> None:
    if loss is not None and len(targets or ()) != outputs:
        raise ModelInputError(f"the loss {loss!r} needs one label array per model output: the model has {outputs}, "
                              f"{len(targets or ())} given", "pass --labels once per model output, in output order")


def call_arguments(node, values: dict) -> tuple[list, dict]:
    """The node's call arguments (args, kwargs) with each input tensor replaced by values[id(tensor)]."""
    if hasattr(node, "arguments"):                         # Keras 3
        args, kwargs = node.arguments.args, node.arguments.kwargs
    else:                                                  # tf_keras
        args, kwargs = node.call_args, node.call_kwargs
    inputs = {id(t) for t in node_inputs(node)}

    def replace(item):
        if isinstance(item, (list, tuple)):
            return type(item)(replace(element) for element in item)
        if isinstance(item, dict):
            return {key: replace(element) for key, element in item.items()}
        return values.get(id(item)) if id(item) in inputs else item  # a mask not given: none

    return list(replace(list(args))), replace(dict(kwargs))
