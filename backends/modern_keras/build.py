"""Build a Keras 3 or tf_keras model from a `ModelDescription` (see legacy_config.py).

Layers are constructed directly from the description's arguments and wired with the
functional API. Only arguments that shape the forward pass are passed on: initializers,
regularizers and constraints do not matter once the stored weights are loaded, and
dropout rates inside recurrent layers do nothing at inference.

`keras` is the module to build with: Keras 3 (`import keras`, any backend) or `tf_keras`.
"""
from __future__ import annotations

from backends.common.errors import LambdaBytecodeError, ModelInputError
from backends.modern_keras import lambda_bytecode
from backends.modern_keras.extra_layer_classes import layer_classes
from backends.modern_keras.legacy_config import LayerSpec, ModelDescription, TensorRef
from kdiff.protocol.layer_catalog import KDIFF_EXTRA_LAYERS, TF_KERAS_NATIVE

_CONV = ("filters", "kernel_size", "strides", "padding", "data_format", "dilation_rate",
         "activation", "use_bias")
_POOL = ("pool_size", "strides", "padding", "data_format")
_DEPTHWISE = ("kernel_size", "strides", "padding", "data_format", "dilation_rate", "depth_multiplier",
              "activation", "use_bias")
_RNN = ("units", "activation", "use_bias", "return_sequences", "return_state",
        "go_backwards", "unroll")

# Class -> the arguments passed to its constructor (Keras 2 names).
LAYER_ARGUMENTS = {
    "Dense": ("units", "activation", "use_bias"),
    "Activation": ("activation",),
    "Dropout": ("rate",),
    "SpatialDropout1D": ("rate",),
    "SpatialDropout2D": ("rate", "data_format"),
    "SpatialDropout3D": ("rate", "data_format"),
    "GaussianNoise": ("stddev",),
    "GaussianDropout": ("rate",),
    "AlphaDropout": ("rate",),
    "ActivityRegularization": ("l1", "l2"),
    "Flatten": ("data_format",),
    "Reshape": ("target_shape",),
    "Permute": ("dims",),
    "RepeatVector": ("n",),
    "Masking": ("mask_value",),
    "Embedding": ("input_dim", "output_dim", "mask_zero"),
    "Conv1D": _CONV, "Conv2D": _CONV, "Conv3D": _CONV,
    "Conv2DTranspose": _CONV + ("output_padding",), "Conv3DTranspose": _CONV + ("output_padding",),
    "SeparableConv1D": _CONV + ("depth_multiplier",), "SeparableConv2D": _CONV + ("depth_multiplier",),
    "DepthwiseConv2D": _DEPTHWISE,
    "LocallyConnected1D": ("filters", "kernel_size", "strides", "padding", "activation", "use_bias"),
    "LocallyConnected2D": ("filters", "kernel_size", "strides", "padding", "data_format", "activation",
                           "use_bias"),
    "ConvLSTM2D": _CONV + ("recurrent_activation", "unit_forget_bias", "return_sequences", "return_state",
                           "go_backwards"),
    "MaxPooling1D": _POOL, "MaxPooling2D": _POOL, "MaxPooling3D": _POOL,
    "AveragePooling1D": _POOL, "AveragePooling2D": _POOL, "AveragePooling3D": _POOL,
    "GlobalMaxPooling1D": ("data_format",), "GlobalMaxPooling2D": ("data_format",),
    "GlobalMaxPooling3D": ("data_format",),
    "GlobalAveragePooling1D": ("data_format",), "GlobalAveragePooling2D": ("data_format",),
    "GlobalAveragePooling3D": ("data_format",),
    "ZeroPadding1D": ("padding",), "ZeroPadding2D": ("padding", "data_format"),
    "ZeroPadding3D": ("padding", "data_format"),
    "Cropping1D": ("cropping",), "Cropping2D": ("cropping", "data_format"),
    "Cropping3D": ("cropping", "data_format"),
    "UpSampling1D": ("size",), "UpSampling2D": ("size", "data_format", "interpolation"),
    "UpSampling3D": ("size", "data_format"),
    "BatchNormalization": ("axis", "momentum", "epsilon", "center", "scale"),
    "SimpleRNN": _RNN,
    "LSTM": _RNN + ("recurrent_activation", "unit_forget_bias"),
    "GRU": _RNN + ("recurrent_activation", "reset_after"),
    "RNN": ("return_sequences", "return_state", "go_backwards", "unroll"),
    "SimpleRNNCell": ("units", "activation", "use_bias"),
    "LSTMCell": ("units", "activation", "recurrent_activation", "use_bias", "unit_forget_bias"),
    "GRUCell": ("units", "activation", "recurrent_activation", "use_bias", "reset_after"),
    "Bidirectional": ("merge_mode",),
    "TimeDistributed": (),
    "Add": (), "Subtract": (), "Multiply": (), "Average": (), "Maximum": (), "Minimum": (),
    "Concatenate": ("axis",),
    "Dot": ("axes", "normalize"),
    "LeakyReLU": ("alpha",),
    "PReLU": ("shared_axes",),
    "ELU": ("alpha",),
    "ReLU": ("max_value", "negative_slope", "threshold"),
    "ThresholdedReLU": ("theta",),
    "SReLU": ("shared_axes",),
    "ParametricSoftplus": ("shared_axes",),
    "Highway": ("activation", "use_bias"),
    "MaxoutDense": ("units", "nb_feature", "use_bias"),
    "Softmax": ("axis",),
    "Lambda": ("arguments",),
}


def build_model(keras, description: ModelDescription, custom_objects: dict,
                trust_lambda_bytecode: bool):
    """The model, with freshly initialised weights (load the stored ones next)."""
    functions = {spec.name: lambda_function(keras, spec, custom_objects, trust_lambda_bytecode)
                 for layer in description.layers for spec in layer.walk()
                 if spec.class_name == "Lambda"}
    produced: dict[tuple[str, int], list] = {}
    for spec in description.layers:
        if spec.class_name == "InputLayer":
            produced[(spec.name, 0)] = [keras.Input(
                batch_shape=tuple(spec.config["batch_input_shape"]),
                dtype=spec.config["dtype"], name=spec.name)]
    layers = {spec.name: make_layer(keras, spec, functions, custom_objects)
              for spec in description.layers if spec.class_name != "InputLayer"}
    _call_layers_in_graph_order(description, layers, produced)
    inputs = [_tensor(produced, ref) for ref in description.inputs]
    outputs = [_tensor(produced, ref) for ref in description.outputs]
    return keras.Model(inputs=inputs[0] if len(inputs) == 1 else inputs,
                       outputs=outputs[0] if len(outputs) == 1 else outputs,
                       name=description.name)


def _call_layers_in_graph_order(description, layers, produced) -> None:
    """Call every layer on its inputs once they exist (a layer's calls in file order)."""
    specs = {spec.name: spec for spec in description.layers}
    pending = [(spec.name, index, refs) for spec in description.layers
               if spec.class_name != "InputLayer"
               for index, refs in enumerate(spec.inbound_nodes)]
    while pending:
        waiting = []
        for name, index, refs in pending:
            ready = all((ref.layer, ref.node) in produced for ref in refs) and \
                (index == 0 or (name, index - 1) in produced)
            if not ready:
                waiting.append((name, index, refs))
                continue
            tensors = [_tensor(produced, ref) for ref in refs]
            call_kwargs = {"training": training} if (training := specs[name].call_training.get(index)) is not None else {}
            result = layers[name](tensors[0] if len(tensors) == 1 else tensors, **call_kwargs)
            produced[(name, index)] = list(result) if isinstance(result, (list, tuple)) else [result]
        if len(waiting) == len(pending):
            name, _, refs = waiting[0]
            missing = [ref.layer for ref in refs if (ref.layer, ref.node) not in produced]
            raise ModelInputError(f"the model graph cannot be wired: layer '{name}' takes the "
                                  f"output of {missing}, which no layer produces",
                                  "the model JSON is inconsistent; save it again from Keras")
        pending = waiting


def _tensor(produced, ref: TensorRef):
    try:
        return produced[(ref.layer, ref.node)][ref.tensor]
    except (KeyError, IndexError):
        raise ModelInputError(f"the model JSON refers to output {ref.tensor} of call "
                              f"{ref.node} of layer '{ref.layer}', which does not exist") from None


def make_layer(keras, spec: LayerSpec, functions: dict, custom_objects: dict | None = None):
    """One layer object, named as in the file; a layer class of the user's own is made from the file's
    config by the class's from_config."""
    if spec.custom:
        return custom_objects[spec.class_name].from_config({**spec.config, "name": spec.name})
    kwargs = {key: spec.config[key] for key in LAYER_ARGUMENTS.get(spec.class_name, ())
              if key in spec.config}
    if spec.class_name == "Sequential":
        return keras.Sequential([make_layer(keras, sub, functions, custom_objects) for sub in spec.sublayers],
                                name=spec.name)
    if spec.class_name in ("Bidirectional", "TimeDistributed"):
        inner = make_layer(keras, spec.inner, functions, custom_objects)
        return getattr(keras.layers, spec.class_name)(inner, name=spec.name, **kwargs)
    if spec.class_name == "RNN":
        return keras.layers.RNN(_cell(keras, spec.inner), name=spec.name, **kwargs)
    if spec.class_name in KDIFF_EXTRA_LAYERS and not (
            keras.__name__ == "tf_keras" and spec.class_name in TF_KERAS_NATIVE):
        return layer_classes(keras)[spec.class_name](name=spec.name, **kwargs)
    if spec.class_name == "Lambda":
        return keras.layers.Lambda(functions[spec.name], name=spec.name, **kwargs)
    if spec.class_name == "LeakyReLU" and _is_keras3(keras):
        kwargs["negative_slope"] = kwargs.pop("alpha")
    if spec.class_name == "Embedding" and not spec.config.get("mask_zero"):
        kwargs.pop("mask_zero", None)
    return getattr(keras.layers, spec.class_name)(name=spec.name, **kwargs)


def _cell(keras, spec: LayerSpec):
    """An RNN's cell; a StackedRNNCells of its cells."""
    if spec.class_name == "StackedRNNCells":
        return keras.layers.StackedRNNCells([_cell(keras, sub) for sub in spec.sublayers])
    kwargs = {key: spec.config[key] for key in LAYER_ARGUMENTS[spec.class_name] if key in spec.config}
    return getattr(keras.layers, spec.class_name)(**kwargs)


def _is_keras3(keras) -> bool:
    return keras.__name__ == "keras" and int(keras.__version__.split(".")[0]) >= 3


def lambda_function(keras, spec: LayerSpec, custom_objects: dict, trust_bytecode: bool):
    """The function a Lambda layer runs: the user's (by layer or function name) first."""
    if spec.name in custom_objects:
        return custom_objects[spec.name]
    stored, function_type = spec.config.get("function"), spec.config.get("function_type", "lambda")
    if function_type == "function":             # stored by name only
        if stored in custom_objects:
            return custom_objects[stored]
        raise ModelInputError(f"Lambda layer '{spec.name}' calls the function '{stored}', "
                              "which the model file does not contain",
                              f"supply '{stored}' with --custom-objects FILE.py")
    code_text, defaults, closure = lambda_bytecode.split_stored_function(stored)
    raw = lambda_bytecode.decode_stored_code(code_text)
    found = lambda_bytecode.function_name(raw)
    name = found[0] if found and found[0] != "<lambda>" else ""
    if name and name in custom_objects:
        return custom_objects[name]
    if not trust_bytecode:
        raise LambdaBytecodeError(spec.name, name)
    return lambda_bytecode.function_from_bytecode(
        raw, defaults, closure, lambda_globals(keras, custom_objects), spec.name)


def lambda_globals(keras, custom_objects: dict) -> dict:
    """What old Lambda code finds as globals: `K` (the backend functions), `np`, `keras`."""
    import numpy as np

    backend = keras.ops if _is_keras3(keras) else keras.backend
    return {"__builtins__": __builtins__, "K": backend, "np": np, "keras": keras,
            **custom_objects}
