"""Read Keras 1 and Keras 2 model JSON into a framework-free description.

Keras 3 cannot read these files itself. This module turns them into a `ModelDescription`:
the layers (Keras 2 class names and Keras 2 argument names, values exactly as the file
says) and the graph that connects them. `build.py` turns a description into a model.

Faithfulness rules (kdiff must reveal differences, never paper over them):
- an argument the file states is kept as stated (activation names, data_format, epsilon...);
- an argument the file leaves out gets the default *of the Keras version that wrote the
  file* (GRU reset_after=False, recurrent_activation='hard_sigmoid', LeakyReLU alpha 0.3,
  Flatten in memory order, ...), written into the description explicitly;
- layer names are kept exactly.
"""
from __future__ import annotations

import contextvars
import json
from dataclasses import dataclass, field

from backends.common import keras1_ordering
from backends.common.errors import ModelInputError, UnsupportedLayerError
from kdiff.protocol import layer_catalog

# Classes a description may hold (Keras 2 names). Anything else is refused up front.
# The one list, shared with the coordinator's pre-check (kdiff/model_files.py).
SUPPORTED_CLASSES = layer_catalog.DESCRIPTION_CLASSES

# Layer classes of the user's own (--custom-objects) that the description being parsed may hold, kept with
# the file's class name and config as they are (set by parse_model_config).
_CUSTOM_CLASSES: contextvars.ContextVar[frozenset] = contextvars.ContextVar("custom_classes", default=frozenset())

RECURRENT_CLASSES = ("SimpleRNN", "LSTM", "GRU")
WRAPPER_CLASSES = ("Bidirectional", "TimeDistributed")

# Keras 1 class name -> Keras 2 class name (where only the name changed).
KERAS1_CLASS_RENAMES = layer_catalog.KERAS1_CLASS_RENAMES
# Convolutions whose Keras 1 config gives the kernel as nb_row, nb_col.
KERAS1_ROW_COL_KERNELS = ("Conv2D", "Conv2DTranspose", "SeparableConv2D", "LocallyConnected2D", "ConvLSTM2D")

# Keras 1 argument name -> Keras 2 argument name, for every layer (after the per-class
# renames in KERAS1_CLASS_ARGUMENT_RENAMES). Mirrors keras/legacy/interfaces.py of 2.x.
KERAS1_ARGUMENT_RENAMES = {
    "output_dim": "units", "nb_filter": "filters", "filter_length": "kernel_size",
    "init": "kernel_initializer", "inner_init": "recurrent_initializer",
    "W_regularizer": "kernel_regularizer", "U_regularizer": "recurrent_regularizer",
    "b_regularizer": "bias_regularizer", "W_constraint": "kernel_constraint",
    "U_constraint": "recurrent_constraint", "b_constraint": "bias_constraint",
    "bias": "use_bias", "border_mode": "padding", "subsample": "strides",
    "subsample_length": "strides", "inner_activation": "recurrent_activation",
    "dropout_W": "dropout", "dropout_U": "recurrent_dropout", "input_dtype": "dtype",
    "atrous_rate": "dilation_rate", "pool_length": "pool_size", "stride": "strides",
    "dim_ordering": "data_format",
}
KERAS1_CLASS_ARGUMENT_RENAMES = {
    "Dropout": {"p": "rate"},
    "SpatialDropout1D": {"p": "rate"},
    "SpatialDropout2D": {"p": "rate"},
    "SpatialDropout3D": {"p": "rate"},
    "GaussianDropout": {"p": "rate"},
    "GaussianNoise": {"sigma": "stddev"},
    # Keras 2 kept Embedding's `output_dim` (only Dense's and the recurrent layers' became `units`)
    "Embedding": {"output_dim": "output_dim", "init": "embeddings_initializer",
                  "W_regularizer": "embeddings_regularizer", "W_constraint": "embeddings_constraint"},
    "PReLU": {"init": "alpha_initializer"},
    "BatchNormalization": {"gamma_init": "gamma_initializer", "beta_init": "beta_initializer"},
    "UpSampling1D": {"length": "size"},
    "SeparableConv2D": {"init": "depthwise_initializer"},
}
DATA_FORMATS = {"th": "channels_first", "tf": "channels_last",
                "channels_first": "channels_first", "channels_last": "channels_last"}
# Layers whose Keras 1 config carries `dim_ordering` (Keras 2: `data_format`).
IMAGE_LAYERS = ("Conv2D", "Conv3D", "Conv2DTranspose", "SeparableConv2D", "MaxPooling2D",
                "AveragePooling2D", "GlobalMaxPooling2D", "GlobalAveragePooling2D", "ZeroPadding2D",
                "Cropping2D", "UpSampling2D", "SpatialDropout2D", "MaxPooling3D", "AveragePooling3D",
                "GlobalMaxPooling3D", "GlobalAveragePooling3D", "ZeroPadding3D", "Cropping3D",
                "UpSampling3D", "SpatialDropout3D", "LocallyConnected2D", "ConvLSTM2D")
# Class-name prefixes of the convolutions (plain, transposed, separable, depthwise).
CONVOLUTION_PREFIXES = ("Conv", "SeparableConv", "DepthwiseConv")
# Keras 1 `Merge` modes -> Keras 2 merge layer classes.
MERGE_MODES = {"sum": "Add", "mul": "Multiply", "concat": "Concatenate", "ave": "Average",
               "max": "Maximum", "dot": "Dot"}


@dataclass(frozen=True)
class TensorRef:
    """One output tensor of one call ("node") of a layer."""
    layer: str
    node: int = 0
    tensor: int = 0


@dataclass
class LayerSpec:
    name: str
    class_name: str                      # Keras 2 class name
    config: dict                         # Keras 2 argument names; no 'name'
    inbound_nodes: list[list[TensorRef]] = field(default_factory=list)  # one list per call
    call_training: dict[int, bool] = field(default_factory=dict)  # call index -> an explicit training=
    inner: LayerSpec | None = None       # the wrapped layer of Bidirectional/TimeDistributed
    sublayers: list[LayerSpec] = field(default_factory=list)  # a nested Sequential's layers
    custom: bool = False                 # a layer class of the user's own: class name and config as the file has them

    def walk(self):
        """This layer and every layer inside it."""
        yield self
        if self.inner is not None:
            yield from self.inner.walk()
        for sub in self.sublayers:
            yield from sub.walk()


@dataclass
class ModelDescription:
    name: str
    layers: list[LayerSpec]              # InputLayers included, in file order
    inputs: list[TensorRef]
    outputs: list[TensorRef]
    keras_version: str                   # as written by the file, or "1"/"2" when inferred

    @property
    def keras_major(self) -> int:
        return int(self.keras_version[0])

    def layer(self, name: str) -> LayerSpec:
        for spec in self.layers:
            if spec.name == name:
                return spec
        raise KeyError(name)


def custom_layer_classes(custom_objects: dict) -> frozenset:
    """The names of the user's classes (--custom-objects) that are no layer class kdiff knows: a model's
    layers of these classes are built from the user's class."""
    return frozenset(name for name, value in custom_objects.items()
                     if isinstance(value, type) and name not in layer_catalog.SUPPORTED_LAYERS)


def parse_model_config(model_config: dict, custom_classes: frozenset = frozenset()) -> ModelDescription:
    """`model_config`: the dict of model.to_json() (or of an HDF5 file's model_config); `custom_classes`:
    the layer classes of the user's own it may name (custom_layer_classes)."""
    token = _CUSTOM_CLASSES.set(frozenset(custom_classes))
    try:
        return _with_keras3_names(_parse_model_config(model_config))
    finally:
        _CUSTOM_CLASSES.reset(token)


def keras3_name(name: str) -> str:
    """A layer's name as Keras 3 accepts it: Keras 2 allowed '/' (keras_applications' DenseNet names its layers
    'conv1/conv'), Keras 3 refuses it in a name; '/' becomes '_'. (kdiff.alignment pairs such names.)"""
    return name.replace("/", "_")


def _with_keras3_names(description: ModelDescription) -> ModelDescription:
    def ref(r: TensorRef) -> TensorRef:
        return TensorRef(keras3_name(r.layer), r.node, r.tensor) if "/" in r.layer else r

    for layer in description.layers:
        for spec in layer.walk():
            spec.name = keras3_name(spec.name)
        layer.inbound_nodes = [[ref(r) for r in node] for node in layer.inbound_nodes]
    description.inputs = [ref(r) for r in description.inputs]
    description.outputs = [ref(r) for r in description.outputs]
    return description


def _parse_model_config(model_config: dict) -> ModelDescription:
    if not isinstance(model_config, dict) or "class_name" not in model_config:
        raise ModelInputError("the model JSON has no top-level 'class_name'",
                              "pass the JSON written by Keras 1/2 model.to_json()")
    keras_version = str(model_config.get("keras_version") or "")
    if not keras_version:
        keras_version = "1" if _looks_like_keras1(model_config) else "2"
    if keras_version[0] not in "12":
        raise ModelInputError(f"this reader handles Keras 1 and 2 files, not Keras {keras_version}")
    major = int(keras_version[0])
    if major == 1:
        model_config = _fill_keras1_dim_ordering(model_config, keras_version)
    class_name, config = model_config["class_name"], model_config["config"]
    if class_name == "Sequential":
        name = config.get("name", "sequential") if isinstance(config, dict) else "sequential"
        layers, inputs, output = _parse_sequential(_sequential_entries(config), major, keras_version)
        return ModelDescription(name, layers, inputs, [output], keras_version)
    if class_name in ("Model", "Functional"):
        return _parse_functional(config, major, keras_version)
    raise UnsupportedLayerError(class_name, hint="the top-level model must be a Sequential or a Model")


def _fill_keras1_dim_ordering(model_config: dict, version: str) -> dict:
    """Keras 1.2 left `dim_ordering` out of ZeroPadding2D, UpSampling2D, Cropping2D... configs:
    the ordering comes from the one rule the theano worker uses too (backends/common/keras1_ordering.py)."""
    return keras1_ordering.fill_dim_ordering(model_config, version)[0]


def _looks_like_keras1(model_config: dict) -> bool:
    keras1_keys = {"output_dim", "nb_filter", "border_mode", "dim_ordering", "init", "p"}
    text = json.dumps(model_config)
    if any(f'"{old}"' in text for old in KERAS1_CLASS_RENAMES) or '"Merge"' in text:
        return True
    return any(f'"{key}":' in text for key in keras1_keys)


def _sequential_entries(config) -> list:
    """Keras 1 and Keras <= 2.1 wrote a Sequential's config as a bare list of layers."""
    return config if isinstance(config, list) else config["layers"]


def _parse_sequential(entries: list, major: int, version: str, input_counts=None):
    """A chain of layers -> (layers, input refs, output ref)."""
    input_counts = {} if input_counts is None else input_counts
    if not entries:
        raise ModelInputError("the Sequential model has no layers")
    layers: list[LayerSpec] = []
    inputs: list[TensorRef] = []
    first_class, first_config = entries[0]["class_name"], entries[0]["config"]
    if first_class == "InputLayer":
        layers.append(_input_layer(first_config["name"], first_config, major))
        entries = entries[1:]
    elif first_class == "Merge" and first_config.get("layers"):
        # Keras 1: a Sequential that starts by merging several Sequential branches.
        # The branches' layers become top-level layers (their weights are stored that way).
        branch_outputs = []
        for branch in first_config["layers"]:
            branch_layers, branch_inputs, branch_output = _parse_sequential(
                _sequential_entries(branch["config"]), major, version, input_counts)
            layers += branch_layers
            inputs += branch_inputs
            branch_outputs.append(branch_output)
        merge = normalize_layer(entries[0], major, version)
        merge.inbound_nodes = [branch_outputs]
        layers.append(merge)
        entries = entries[1:]
    else:
        input_name = _sequential_input_name(entries[0], major, input_counts)
        layers.append(_input_layer(input_name, first_config, major, entries[0]["class_name"]))
    if not inputs:
        inputs = [TensorRef(layers[0].name)]
    current = TensorRef(layers[-1].name)
    for entry in entries:
        spec = normalize_layer(entry, major, version)
        spec.inbound_nodes = [[current]]
        layers.append(spec)
        current = TensorRef(spec.name)
    return layers, inputs, current


def _sequential_input_name(first_entry: dict, major: int, input_counts: dict) -> str:
    """The name Keras gave a Sequential's implicit input layer in a freshly loaded model."""
    if major >= 2:
        return first_entry["config"]["name"] + "_input"
    # Keras 1: '<class name, lower case>_input_<n>', n counting per prefix from 1.
    prefix = first_entry["class_name"].lower() + "_input"
    input_counts[prefix] = input_counts.get(prefix, 0) + 1
    return f"{prefix}_{input_counts[prefix]}"


def _input_layer(name: str, config: dict, major: int, owner_class: str = "InputLayer") -> LayerSpec:
    shape = config.get("batch_input_shape")
    if shape is None and "input_shape" in config:
        shape = [None] + list(config["input_shape"])
    if shape is None and "build_input_shape" in config:
        shape = config["build_input_shape"]
    if shape is None:
        raise ModelInputError(
            f"the model does not say its input shape (first layer '{config.get('name')}' "
            f"({owner_class}) has no batch_input_shape)",
            "give the first layer an input_shape in the original Keras and save the JSON again")
    dtype = config.get("dtype") or config.get("input_dtype") or "float32"
    return LayerSpec(name, "InputLayer", {"batch_input_shape": list(shape), "dtype": dtype})


def _parse_functional(config: dict, major: int, version: str) -> ModelDescription:
    layers = []
    for entry in config["layers"]:
        if entry["class_name"] == "InputLayer":
            spec = _input_layer(entry["config"].get("name", entry["name"]), entry["config"], major)
            spec.name = entry["name"]
        else:
            spec = normalize_layer(entry, major, version)
            spec.name = entry["name"]
            spec.inbound_nodes = [_parse_node(node, spec.name) for node in entry["inbound_nodes"]]
            spec.call_training = {index: training for index, node in enumerate(entry["inbound_nodes"])
                                  if (training := _explicit_training(node)) is not None}
        layers.append(spec)
    return ModelDescription(config.get("name", "model"), layers,
                            _parse_refs(config["input_layers"]),
                            _parse_refs(config["output_layers"]), version)


def _parse_refs(refs: list) -> list[TensorRef]:
    if refs and isinstance(refs[0], str):       # a single [name, node, tensor]
        refs = [refs]
    return [TensorRef(ref[0], ref[1], ref[2]) for ref in refs]


def _explicit_training(node: list) -> bool | None:
    """The call's explicit training= argument (e.g. Monte-Carlo dropout), which the file keeps."""
    for inbound in node:
        call_kwargs = inbound[3] if len(inbound) > 3 and isinstance(inbound[3], dict) else {}
        if call_kwargs.get("training") is not None:
            return bool(call_kwargs["training"])
    return None


def _parse_node(node: list, layer_name: str) -> list[TensorRef]:
    refs = []
    for inbound in node:
        call_kwargs = inbound[3] if len(inbound) > 3 else {}
        unsupported = set(call_kwargs or {}) - {"training", "mask"}
        if unsupported:
            raise UnsupportedLayerError(
                f"call arguments {sorted(unsupported)}", layer_name,
                "kdiff cannot yet rebuild a layer called with these extra arguments")
        refs.append(TensorRef(inbound[0], inbound[1], inbound[2]))
    return refs


def normalize_layer(entry: dict, major: int, version: str) -> LayerSpec:
    """One {'class_name', 'config'} entry -> LayerSpec in Keras 2 terms (no graph yet)."""
    if entry["class_name"] == "Sequential":
        return _nested_sequential(entry, major, version)
    class_name, config = entry["class_name"], dict(entry["config"])
    name = config.pop("name", entry.get("name", ""))
    if class_name in _CUSTOM_CLASSES.get():
        for key in ("batch_input_shape", "input_shape", "input_dtype", "batch_size"):  # the InputLayer's
            config.pop(key, None)
        return LayerSpec(name, class_name, config, custom=True)
    if major == 1:
        class_name, config = _keras1_to_keras2(class_name, config, name, version)
    class_name, config = _legacy_layer_arguments(class_name, config)
    if class_name not in SUPPORTED_CLASSES:
        raise UnsupportedLayerError(entry["class_name"], name)
    _fill_keras2_defaults(class_name, config, name, version)
    spec = LayerSpec(name, class_name, config)
    if class_name == "RNN":
        spec.inner = _rnn_cell(config.pop("cell"), major, version, name)
    if class_name in WRAPPER_CLASSES:
        if config.pop("backward_layer", None) is not None:
            raise UnsupportedLayerError("Bidirectional with a custom backward_layer", name)
        spec.inner = normalize_layer(config.pop("layer"), major, version)
    return spec


def _legacy_layer_arguments(class_name: str, config: dict):
    """The layers Keras 2 kept with Keras 1 argument names (Highway, MaxoutDense), and the CuDNN layers,
    which are rebuilt as the plain LSTM/GRU that computes the same (see layer_catalog.CUDNN_TRANSLATIONS)."""
    if class_name in ("Highway", "MaxoutDense") and "bias" in config:
        config["use_bias"] = config.pop("bias")
    if class_name == "MaxoutDense" and "output_dim" in config:
        config["units"] = config.pop("output_dim")
    if class_name in layer_catalog.CUDNN_TRANSLATIONS:
        # CuDNN's fixed functions; its weights are converted when they are loaded (legacy_weights)
        config.update(activation="tanh", recurrent_activation="sigmoid", use_bias=True)
        if class_name == "CuDNNGRU":
            config["reset_after"] = True
        class_name = layer_catalog.CUDNN_TRANSLATIONS[class_name]
    return class_name, config


def _rnn_cell(entry, major: int, version: str, layer_name: str) -> LayerSpec:
    """An RNN layer's cell (Keras 2's RNN(cell)): a SimpleRNNCell/LSTMCell/GRUCell, or StackedRNNCells of
    them; Keras 2 wrote a list of cells as StackedRNNCells already."""
    if isinstance(entry, list):
        entry = {"class_name": "StackedRNNCells", "config": {"cells": entry}}
    if not isinstance(entry, dict) or entry.get("class_name") not in layer_catalog.RNN_CELLS:
        cell = entry.get("class_name") if isinstance(entry, dict) else type(entry).__name__
        raise UnsupportedLayerError(f"RNN with a {cell} cell", layer_name)
    config = dict(entry.get("config") or {})
    name = config.pop("name", "")
    if entry["class_name"] == "StackedRNNCells":
        return LayerSpec(name, "StackedRNNCells", {}, sublayers=[
            _rnn_cell(cell, major, version, layer_name) for cell in config.get("cells", [])])
    class_name = entry["class_name"]
    config.setdefault("activation", "tanh")
    config.setdefault("use_bias", True)
    if class_name != "SimpleRNNCell":
        config.setdefault("recurrent_activation",
                          "sigmoid" if _version_tuple(version) >= (2, 3) else "hard_sigmoid")
    if class_name == "GRUCell":
        config.setdefault("reset_after", False)
    return LayerSpec(name, class_name, config)


def _nested_sequential(entry: dict, major: int, version: str) -> LayerSpec:
    """A Sequential used as a layer: a plain chain of layers is supported."""
    config = entry["config"]
    name = config.get("name") if isinstance(config, dict) else None
    name = entry.get("name") or name or "sequential"
    sublayers = []
    for sub in _sequential_entries(config):
        if sub["class_name"] in ("Merge", "Model", "Functional"):
            raise UnsupportedLayerError(f"Sequential containing {sub['class_name']}", name)
        if sub["class_name"] != "InputLayer":
            sublayers.append(normalize_layer(sub, major, version))
    return LayerSpec(name, "Sequential", {}, sublayers=sublayers)


def _keras1_to_keras2(class_name: str, config: dict, name: str, version: str):
    """Rename a Keras 1 layer and its arguments the way Keras 2's legacy interfaces did."""
    class_name = KERAS1_CLASS_RENAMES.get(class_name, class_name)
    if class_name == "Merge":
        return _keras1_merge(config, name)
    if class_name == "BatchNormalization" and config.get("mode", 0) != 0:
        raise UnsupportedLayerError(f"BatchNormalization(mode={config['mode']})", name,
                                    "only mode=0 (feature-wise, moving statistics) is supported")
    renames = {**KERAS1_ARGUMENT_RENAMES, **KERAS1_CLASS_ARGUMENT_RENAMES.get(class_name, {})}
    out = {renames.get(key, key): value for key, value in config.items()}
    if class_name in KERAS1_ROW_COL_KERNELS:
        out["kernel_size"] = [config["nb_row"], config["nb_col"]]
    if class_name == "Conv2DTranspose":
        out.pop("output_shape", None)       # Keras 2 dropped it: the output size follows from the input
    if class_name == "Conv3D":
        out["kernel_size"] = [config["kernel_dim1"], config["kernel_dim2"], config["kernel_dim3"]]
    if class_name in ("MaxPooling1D", "AveragePooling1D") and out.get("strides") is None:
        out["strides"] = out["pool_size"]
    if class_name in IMAGE_LAYERS:
        out["data_format"] = out.get("data_format") or _keras1_default_ordering(version)
    if "data_format" in out:
        out["data_format"] = DATA_FORMATS[out["data_format"]]
    if out.get("padding") not in (None, "valid", "same") and class_name not in (
            "ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D"):
        raise UnsupportedLayerError(f"{class_name}(border_mode='{out['padding']}')", name)
    if class_name == "LSTM":
        out["unit_forget_bias"] = config.get("forget_bias_init", "one") == "one"
    if class_name == "ZeroPadding1D":
        out["padding"] = _keras1_padding_1d(config.get("padding", 1))
    if class_name == "ZeroPadding2D":
        out["padding"] = _keras1_padding_2d(config.get("padding", (1, 1)))
    if class_name == "BatchNormalization":
        out.update(center=True, scale=True)     # Keras 1 always had gamma and beta
    if class_name == "Embedding":
        out.pop("dropout", None)    # Keras 2 dropped it (as its legacy interface did): it acted only in training
    if class_name == "Lambda" and isinstance(out.get("function"), str) and \
            out.get("function_type") == "lambda":
        out["function"] = [out["function"], None, None]
    return class_name, out


def _version_tuple(version: str) -> tuple[int, ...]:
    """'2.1.6' -> (2, 1, 6); a bare major ('1', when inferred) -> (1,)."""
    parts = []
    for part in version.split(".")[:3]:
        digits = "".join(c for c in part if c.isdigit())
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


def _keras1_default_ordering(version: str) -> str:
    """Keras 1 defaulted to 'th' up to 1.0.8 and to 'tf' afterwards."""
    return keras1_ordering.default_ordering(version)


def _keras1_merge(config: dict, name: str):
    mode = config.get("mode", "sum")
    if not isinstance(mode, str) or mode not in MERGE_MODES:
        raise UnsupportedLayerError(f"Merge(mode={mode!r})", name)
    class_name = MERGE_MODES[mode]
    if class_name == "Concatenate":
        return class_name, {"axis": config.get("concat_axis", -1)}
    if class_name == "Dot":
        return class_name, {"axes": config.get("dot_axes", -1), "normalize": False}
    return class_name, {}


def _keras1_padding_1d(padding):
    if isinstance(padding, dict):
        return [padding.get("left_pad", 0), padding.get("right_pad", 0)]
    if isinstance(padding, int):
        return [padding, padding]
    return list(padding)


def _keras1_padding_2d(padding):
    if isinstance(padding, dict):
        return [[padding.get("top_pad", 0), padding.get("bottom_pad", 0)],
                [padding.get("left_pad", 0), padding.get("right_pad", 0)]]
    if isinstance(padding, int):
        return [[padding, padding], [padding, padding]]
    if len(padding) == 4:       # (top, bottom, left, right)
        return [[padding[0], padding[1]], [padding[2], padding[3]]]
    return [[padding[0], padding[0]], [padding[1], padding[1]]]


def _fill_keras2_defaults(class_name: str, config: dict, name: str, version: str) -> None:
    """Write out the defaults of Keras 1/2 where they differ from today's Keras."""
    if class_name in RECURRENT_CLASSES:
        config.setdefault("activation", "tanh")
        if class_name != "SimpleRNN":   # Keras 2.3.0 changed the default to 'sigmoid'
            config.setdefault("recurrent_activation",
                              "sigmoid" if _version_tuple(version) >= (2, 3) else "hard_sigmoid")
        config.setdefault("use_bias", True)
        config.setdefault("return_sequences", False)
        config.setdefault("go_backwards", False)
    if class_name == "GRU":
        config.setdefault("reset_after", False)
    if class_name == "LSTM":
        config.setdefault("unit_forget_bias", True)
    if class_name == "LeakyReLU":
        config.setdefault("alpha", 0.3)
    if class_name == "ELU":
        config.setdefault("alpha", 1.0)
    if class_name == "Flatten":
        # No data_format (Keras <= 2.1.5 and Keras 1): flatten in memory order, which is
        # what a 'channels_last' Flatten does whatever the real layout is.
        config["data_format"] = config.get("data_format") or "channels_last"
    if class_name == "BatchNormalization":
        config.setdefault("axis", -1)
        config.setdefault("epsilon", 1e-3)
        config.setdefault("momentum", 0.99)
        config.setdefault("center", True)
        config.setdefault("scale", True)
    if class_name == "Dense" or class_name.startswith(CONVOLUTION_PREFIXES):
        config.setdefault("activation", "linear")
        config.setdefault("use_bias", True)
    if class_name.startswith(("SeparableConv", "DepthwiseConv")):
        config.setdefault("depth_multiplier", 1)
    if class_name.startswith(CONVOLUTION_PREFIXES + ("MaxPooling", "AveragePooling", "GlobalMax",
                                                     "GlobalAverage", "ZeroPadding", "Cropping",
                                                     "UpSampling")):
        config["data_format"] = DATA_FORMATS[config.get("data_format") or "channels_last"]
    if class_name.startswith(CONVOLUTION_PREFIXES + ("MaxPooling", "AveragePooling")):
        config.setdefault("padding", "valid")
    if class_name == "Bidirectional":
        config.setdefault("merge_mode", "concat")
    if class_name == "Activation" and not isinstance(config.get("activation"), str):
        raise UnsupportedLayerError(f"Activation({config.get('activation')!r})", name)
