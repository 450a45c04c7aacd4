"""Config-level changes to one layer of a model loaded by backends.modern_keras.loading: run a
changed copy of the layer alone, or rebuild the model with the change kept.

A changed layer is a new layer of the same class made from the old one's config with the
overrides applied, holding the old one's weights; the model is rebuilt by calling its own layer
objects again on its own inputs, the changed layer in the old one's place, so every other
weight stays shared and the model saves as a plain Keras model."""
from __future__ import annotations

from backends.common.errors import ModelInputError
from backends.modern_keras.graph import data_inputs, flat, graph_nodes, node_outputs
from backends.modern_keras.layer_ops import call_arguments


BIAS_APART = "kdiff:bias_added_apart"  # kdiff.diagnosis.rules.framework_bias_add: a workaround, not a setting
AVERAGE_APART = "kdiff:average_counted_apart"  # kdiff.diagnosis.rules.framework_avgpool_same: the same
MASKED_BY = "kdiff:masked_by"  # kdiff.diagnosis.mask_dropped: the copy masks its input as Masking(value) would
UNMASKED = "kdiff:unmasked"    # the same rule the other way: the copy ignores the mask it is given
NORMALIZED_APART = "kdiff:normalized_apart"  # framework-layernorm-axis: normalised with moments, not torch's kernel
THEANO_POOLING = "kdiff:theano_same_pooling"  # padding-same-asymmetry: a 'same' pooling padded as Theano padded it


def changed_copy(layer, overrides: dict):
    """A new layer like `layer`, its config updated with `overrides` (built on first call). The
    override BIAS_APART is no setting: the copy's call adds its bias with the tensor's own '+'
    (a framework bug's workaround; a saved model does not keep it)."""
    overrides = dict(overrides)
    bias_apart = overrides.pop(BIAS_APART, False)
    average_apart = overrides.pop(AVERAGE_APART, False)
    masked_by, unmasked = overrides.pop(MASKED_BY, None), overrides.pop(UNMASKED, False)
    overrides_normalized_apart = overrides.pop(NORMALIZED_APART, False)
    if overrides.pop(THEANO_POOLING, False):
        return _theano_pooling(layer)
    config = layer.get_config()
    unknown = sorted(set(overrides) - set(config))
    if unknown:
        raise ModelInputError(f"layer '{layer.name}' ({type(layer).__name__}) has no setting {', '.join(unknown)}",
                              f"its settings are: {', '.join(sorted(config))}")
    copy = type(layer).from_config({**config, **overrides})
    if bias_apart:
        _add_bias_apart(copy)
    if average_apart:
        _average_counted_apart(copy)
    if overrides_normalized_apart:
        _normalized_apart(copy)
    if masked_by is not None or unmasked:
        _with_mask(copy, None if unmasked else float(masked_by))
    return copy


def _normalized_apart(layer) -> None:
    """A Keras 3 LayerNormalization normalised with its mean and variance over its own axes (keras.ops.moments),
    not with torch's F.layer_norm, which Keras 3's torch path calls for any run of adjacent axes and which
    normalises over the trailing axes of that length, whatever the layer's axes are."""
    if not all(hasattr(layer, name) for name in ("axis", "epsilon", "center", "scale")):
        raise ModelInputError(f"layer '{layer.name}' ({type(layer).__name__}) is not a Keras 3 LayerNormalization",
                              "only LayerNormalization can be normalised apart")
    from keras import ops

    def call(inputs, *args, **kwargs):
        axes = [axis % len(inputs.shape) for axis in (layer.axis if isinstance(layer.axis, (list, tuple))
                                                       else [layer.axis])]
        shape = [inputs.shape[d] if d in axes else 1 for d in range(len(inputs.shape))]
        mean, variance = ops.moments(inputs, axes=axes, keepdims=True)
        outputs = (inputs - mean) * ops.rsqrt(variance + layer.epsilon)
        if layer.scale:
            outputs = outputs * ops.reshape(layer.gamma, shape)
        if layer.center:
            outputs = outputs + ops.reshape(layer.beta, shape)
        return ops.cast(outputs, inputs.dtype)

    layer.call = call


def _theano_pooling(layer):
    """A Keras 3 'same' max or average pooling as Theano-era Keras computed it (kdiff>TheanoSamePooling), under
    the layer's name: a layer of its own, saved as such."""
    if getattr(layer, "pool_mode", None) not in ("max", "average") or getattr(layer, "padding", "") != "same":
        raise ModelInputError(f"layer '{layer.name}' ({type(layer).__name__}) is not a Keras 3 'same' pooling",
                              "only MaxPooling/AveragePooling1D/2D/3D with padding='same' pool as Theano did")
    import keras

    from backends.modern_keras.theano_pooling import theano_pooling_class

    return theano_pooling_class(keras)(pool_mode=layer.pool_mode, pool_size=layer.pool_size, strides=layer.strides,
                                       data_format=layer.data_format, name=layer.name)


def _with_mask(layer, mask_value: float | None) -> None:
    """A layer that takes a mask, called with the mask a Masking(mask_value) before it would give it (a
    timestep is kept where any of its features differs from mask_value), whatever mask it is given; with
    None, called with no mask at all. (A port that drops a Masking layer, or adds one: mask-dropped.)"""
    import inspect

    own_call = layer.call
    if "mask" not in inspect.signature(own_call).parameters:
        raise ModelInputError(f"layer '{layer.name}' ({type(layer).__name__}) takes no mask",
                              "only a layer that takes a mask (a recurrent layer, ...) can be masked")
    if type(layer).__module__.startswith("tf_keras"):
        import tensorflow as tf

        def mask_of(inputs):
            return tf.reduce_any(tf.not_equal(inputs, mask_value), axis=-1)
    else:
        from keras import ops

        def mask_of(inputs):
            return ops.any(ops.not_equal(inputs, mask_value), axis=-1)

    def call(inputs, *args, mask=None, **kwargs):
        return own_call(inputs, *args, mask=None if mask_value is None else mask_of(inputs), **kwargs)

    layer.call = call
    layer._kdiff_mask = (mask_value,)  # for written_form


def written_form(keras, model):
    """The model as it is written (backends/modern_keras/saving.py): a layer that masks its input itself (a
    mask-dropped fix) gets a real Masking layer before it, and a Masking layer feeding only layers that ignore
    their mask is left out; every other layer is the model's own. The model itself when no layer is so changed."""
    changed = {id(layer): layer._kdiff_mask[0] for layer in model.layers if hasattr(layer, "_kdiff_mask")}
    if not changed:
        return model
    nodes = graph_nodes(model)
    consumers: dict[int, list] = {}
    for layer, _, node in nodes:
        for tensor in data_inputs(node):
            consumers.setdefault(id(tensor), []).append(layer)
    produced = {id(tensor): tensor for tensor in model.inputs}
    for layer, _, node in nodes:
        args, kwargs = call_arguments(node, produced)
        outputs = node_outputs(node)
        readers = [reader for output in outputs for reader in consumers.get(id(output), [])]
        if type(layer).__name__ == "Masking" and readers and all(changed.get(id(r), 0.0) is None for r in readers):
            new = [args[0]]  # left out: its readers ignore the mask
        else:
            if id(layer) in changed:
                kwargs.pop("mask", None)  # (the mask its call was given: the Masking written before it gives it)
            if changed.get(id(layer)) is not None:
                args = [keras.layers.Masking(mask_value=changed[id(layer)], name=f"{layer.name}_masking")(args[0]),
                        *args[1:]]
            new = flat(layer(*args, **kwargs))
        for old, value in zip(outputs, new):
            produced[id(old)] = value
    return _model_of(keras, model, produced)


def _model_of(keras, model, produced: dict):
    """A model with ``model``'s inputs, name, and the outputs that ``produced`` (id of an old tensor -> its new
    tensor) holds for its outputs."""
    inputs = list(model.inputs)
    outputs = [produced[id(tensor)] for tensor in model.outputs]
    return keras.Model(inputs=inputs[0] if len(inputs) == 1 else inputs,
                       outputs=outputs[0] if len(outputs) == 1 else outputs, name=model.name)


def _average_counted_apart(layer) -> None:
    """A Keras 3 average pooling with padding='same' whose call takes the average apart: each window's sum
    over the zero-padded input (padded as TensorFlow pads 'same') over its count of cells inside the input,
    not the torch backend's pooling of an input it padded with its own edge values where the padding is
    uneven."""
    if getattr(layer, "pool_mode", None) != "average" or not hasattr(layer, "pool_size"):
        raise ModelInputError(f"layer '{layer.name}' ({type(layer).__name__}) is not a Keras 3 average pooling",
                              "the average can be taken apart only for AveragePooling1D/2D/3D")
    from keras import ops

    def call(inputs):
        first = layer.data_format == "channels_first"
        spatial = range(2, inputs.ndim) if first else range(1, inputs.ndim - 1)
        pads = [(0, 0)] * inputs.ndim
        for axis, pool, step in zip(spatial, layer.pool_size, layer.strides):
            size = inputs.shape[axis]
            total = max((-(-size // step) - 1) * step + pool - size, 0)
            pads[axis] = (total // 2, total - total // 2)

        def pooled(x):
            return ops.average_pool(ops.pad(x, pads), layer.pool_size, layer.strides, "valid", layer.data_format)

        return pooled(inputs) / pooled(ops.ones_like(inputs))

    layer.call = call


def _add_bias_apart(layer) -> None:
    """A Keras 3 convolution (plain, transposed, depthwise or separable) whose call adds its bias with the
    tensor's own '+', not keras.ops.add (whose TensorFlow form takes a channels_first bias for an NHWC one
    when the output's last axis has the bias's length): the class's own call runs without its bias and its
    activation, which are then applied here."""
    if not all(hasattr(layer, name) for name in ("use_bias", "activation", "data_format")):
        raise ModelInputError(f"layer '{layer.name}' ({type(layer).__name__}) is not a Keras 3 convolution",
                              "the bias can be added apart only for Keras 3's convolution layers")
    from keras import ops

    own_call = type(layer).call

    def call(inputs, *args, **kwargs):
        use_bias, activation = layer.use_bias, layer.activation
        layer.use_bias, layer.activation = False, None
        try:
            outputs = own_call(layer, inputs, *args, **kwargs)
        finally:
            layer.use_bias, layer.activation = use_bias, activation
        if use_bias:
            rank = len(outputs.shape) - 2
            shape = (1, -1) + (1,) * rank if layer.data_format == "channels_first" else (1,) * (rank + 1) + (-1,)
            outputs = outputs + ops.reshape(layer.bias, shape)
        return activation(outputs) if activation is not None else outputs

    layer.call = call


def run_changed(ops, layer_name: str, inputs: list, overrides: dict, training: bool | None,
                weights: list | None = None) -> list:
    """The layer's first call re-run on `inputs` by a changed copy holding the layer's weights, or
    `weights` when given (a copy even without overrides: a training-mode call may update its
    moving statistics)."""
    original = ops.model.get_layer(layer_name)
    copy = changed_copy(original, overrides)
    node = ops._first_node(layer_name)
    args, kwargs = call_arguments(node, dict(zip(map(id, data_inputs(node)), inputs)))
    kwargs = ops.as_in_forward(kwargs) if training is None else {**kwargs, "training": training}
    copy(*args, **kwargs)                       # builds the copy's weights
    _set_weights(copy, original, weights)
    return [ops._numpy(output) for output in flat(copy(*args, **kwargs))]


def rebuilt_with_change(keras, model, layer_name: str, overrides: dict, training: bool | None,
                        weights: list | None = None):
    """The model with the layer replaced by its changed copy holding the layer's weights, or
    `weights` when given (and, when `training` is given, each of its calls made in that mode:
    stored in the graph, which tf_keras honours at inference)."""
    original = model.get_layer(layer_name)
    changed = overrides or training is not None or weights is not None
    replacement = changed_copy(original, overrides) if changed else original
    if training and hasattr(keras, "ops"):
        _always_in_training_mode(replacement)
    produced = {id(tensor): tensor for tensor in model.inputs}
    for layer, _, node in graph_nodes(model):
        args, kwargs = call_arguments(node, produced)
        if layer is original and training is not None:
            kwargs["training"] = training
        _pass_mask(layer, args, kwargs)
        outputs = (replacement if layer is original else layer)(*args, **kwargs)
        for old, new in zip(node_outputs(node), flat(outputs)):
            produced[id(old)] = new
    if replacement is not original:
        _set_weights(replacement, original, weights)
    return _model_of(keras, model, produced)


def _pass_mask(layer, args: list, kwargs: dict) -> None:
    """Give a layer that takes a mask the one its input now carries (an Embedding changed to mask_zero),
    in the call itself: a call's recorded arguments are what the workers run, node by node."""
    import inspect

    carried = getattr(args[0], "_keras_mask", None) if args else None
    if carried is None or kwargs.get("mask") is not None:
        return
    try:
        takes_mask = "mask" in inspect.signature(layer.call).parameters
    except (TypeError, ValueError):
        return
    if takes_mask:
        kwargs["mask"] = carried


def _always_in_training_mode(layer) -> None:
    """Keras 3's model call passes its own training flag to every layer, over one stored in the
    graph (tf_keras keeps the stored one): only the layer itself can insist. A saved model does
    not keep this, as nothing in a plain Keras 3 config can say it."""
    call = layer.call

    def call_in_training_mode(*args, training=None, **kwargs):
        return call(*args, training=True, **kwargs)

    layer.call = call_in_training_mode


def _set_weights(target, source, weights: list | None) -> None:
    """Give the changed copy `weights`, or the original layer's weights when none are given."""
    given = weights is not None
    weights = weights if given else source.get_weights()
    shapes = [tuple(w.shape) for w in target.get_weights()]
    if shapes != [tuple(w.shape) for w in weights]:
        raise ModelInputError(f"the changed layer '{source.name}' holds weights of shapes {shapes}, "
                              f"{'the weights given' if given else 'the layer'} {[tuple(w.shape) for w in weights]}",
                              "send weights shaped for the changed settings" if given else
                              "change only settings that keep the weights, or send the weights for the new ones")
    target.set_weights(weights)
