"""The graph the original Keras (1.2.2 or 2.3.1) built of a model: its layers, each layer's calls
(nodes) in this model, and the names kdiff gives what feeds a layer. Shared by the loading, the
layer operations and the trainer; Keras is imported only when a function runs."""
from __future__ import annotations


def functional_graph(model):
    """The functional graph Keras built: a Keras 1 Sequential keeps it in `.model`."""
    import keras

    if keras.__version__.startswith("1.") and isinstance(model, keras.models.Sequential):
        if model.model is None:
            model.build()
        return model.model
    return model


def model_layers(model) -> list:
    return [layer for layer in functional_graph(model).layers if type(layer).__name__ != "InputLayer"]


def weight_order_layers(model) -> list:
    """The layers in the order Keras's load_weights pairs them with the file's layers."""
    import keras

    if keras.__version__.startswith("1."):
        return model.flattened_layers if hasattr(model, "flattened_layers") else model.layers
    return model.layers


def model_nodes(model, layer) -> list:
    """The nodes (calls) of `layer` that belong to this model, in call order."""
    graph = functional_graph(model)
    if hasattr(layer, "_inbound_nodes"):  # Keras 2
        node_keys, nodes = graph._network_nodes, layer._inbound_nodes
    else:
        node_keys, nodes = graph.container_nodes, layer.inbound_nodes
    return [node for index, node in enumerate(nodes) if f"{layer.name}_ib-{index}" in node_keys]


def plain_shape(shape) -> tuple:
    """Keras computes some dimensions with numpy: make them plain ints (JSON-ready)."""
    return tuple(None if dim is None else int(dim) for dim in shape)


def source_name(layer) -> str:
    return f"input:{layer.name}" if type(layer).__name__ == "InputLayer" else layer.name
