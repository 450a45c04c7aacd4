"""The graph Keras 3 or tf_keras built of a model, walked the same way by the workers and by the
in-job probe: every call (node) in topological order, each layer's output tensors over its
calls and what feeds it, the calls that only compute masks, and the names kdiff gives layers,
tensors and weights. Keras is never imported here: the model brings its own."""
from __future__ import annotations

import importlib


def history(tensor):
    """(layer, node index, tensor index) that produced a symbolic tensor."""
    layer, node_index, tensor_index = tensor._keras_history
    return layer, node_index, tensor_index


def flat(structure) -> list:
    if isinstance(structure, (list, tuple)):
        return [item for element in structure for item in flat(element)]
    if isinstance(structure, dict):
        return [item for element in structure.values() for item in flat(element)]
    return [structure]


def node_inputs(node) -> list:
    if hasattr(node, "keras_inputs"):         # tf_keras
        return list(node.keras_inputs)
    return list(node.input_tensors)           # Keras 3


def data_inputs(node) -> list:
    """The node's input tensors that are data, not the mask passed to it (see masked_layers)."""
    mask = {id(t) for t in flat(call_kwargs(node).get("mask"))}
    return [t for t in node_inputs(node) if id(t) not in mask]


def is_input_layer(layer) -> bool:
    return type(layer).__name__ == "InputLayer"


def graph_nodes(model) -> list[tuple]:
    """(layer, node index, node) of every call inside `model`, in topological order."""
    found: dict[tuple[int, int], tuple] = {}
    stack = [history(t) for t in model.outputs]
    while stack:
        layer, node_index, _ = stack.pop()
        key = (id(layer), node_index)
        if key in found or is_input_layer(layer):
            continue
        node = layer._inbound_nodes[node_index]
        found[key] = (layer, node_index, node)
        stack.extend(history(t) for t in node_inputs(node))
    order = {id(layer): position for position, layer in enumerate(model.layers)}
    ranked = sorted(found.values(), key=lambda item: (order.get(id(item[0]), 1 << 30), item[1]))
    return _topological(ranked)


def _topological(ranked: list) -> list:
    """The calls in `ranked` order, each moved after the calls whose outputs it takes (operations that are
    not layers of the model, such as a mask's computation, rank last in model.layers order)."""
    done, result, pending = set(), [], list(ranked)
    while pending:
        waiting = []
        for item in pending:
            layer, node_index, node = item
            needed = {(id(source), index) for source, index, _ in map(history, node_inputs(node))
                      if not is_input_layer(source)}
            if needed <= done:
                done.add((id(layer), node_index))
                result.append(item)
            else:
                waiting.append(item)
        if len(waiting) == len(pending):   # a cycle cannot happen in a Keras graph; keep the rest as ranked
            return result + waiting
        pending = waiting
    return result


def mask_only_nodes(model) -> set:
    """(id(layer), node index) of the calls that only compute masks: Keras 3 records the operations that a
    mask is computed with (Masking's `any(not_equal(...))`) as calls of the graph, feeding a layer's `mask`
    argument. They are not layers of the model: not compared, not probed."""
    main, stack = set(), [history(t) for t in model.outputs]
    while stack:
        layer, node_index, _ = stack.pop()
        key = (id(layer), node_index)
        if key in main or is_input_layer(layer):
            continue
        main.add(key)
        node = layer._inbound_nodes[node_index]
        masks = {id(t) for t in flat(call_kwargs(node).get("mask"))}
        stack.extend(history(t) for t in node_inputs(node) if id(t) not in masks)
    return {(id(layer), index) for layer, index, _ in graph_nodes(model)} - main


def masked_layers(model) -> set[str]:
    """The names of the layers that some call feeds a mask (an Embedding's mask_zero, a Masking layer's)."""
    return {layer.name for layer, _, node in graph_nodes(model)
            if any(t is not None for t in flat(call_kwargs(node).get("mask")))}


def call_kwargs(node) -> dict:
    if hasattr(node, "arguments"):                         # Keras 3
        return dict(node.arguments.kwargs)
    return dict(getattr(node, "call_kwargs", None) or {})  # tf_keras


def node_outputs(node) -> list:
    return flat(node.output_tensors)


def tensor_shape(tensor) -> tuple:
    return tuple(None if d is None else int(d) for d in tensor.shape)


def layer_calls(model) -> list[tuple]:
    """[(layer, [its output tensors over all its calls], [inbound names])] in order."""
    calls: dict[int, tuple] = {}
    masks = mask_only_nodes(model)
    for layer, node_index, node in graph_nodes(model):
        if (id(layer), node_index) in masks:
            continue
        _, outputs, inbound = calls.setdefault(id(layer), (layer, [], []))
        outputs.extend(node_outputs(node))
        mask = {id(t) for t in flat(call_kwargs(node).get("mask"))}  # a mask is no input: see masked_layers
        for tensor in node_inputs(node):
            if id(tensor) in mask:
                continue
            source = history(tensor)[0]
            name = f"input:{source.name}" if is_input_layer(source) else source.name
            if name not in inbound:
                inbound.append(name)
    return list(calls.values())


def dtype_name(dtype) -> str:
    return getattr(dtype, "name", str(dtype))


def keras_module(model):
    return importlib.import_module(type(model).__module__.split(".")[0])


def weight_name(variable) -> str:
    """'layer/weight': a Keras 3 variable's path, a tf_keras variable's name without ':0'."""
    path = getattr(variable, "path", None)
    return path if isinstance(path, str) else variable.name.removesuffix(":0")
