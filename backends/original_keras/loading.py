"""Load a Theano-era Keras model (model.json + weights.h5) the way Keras 1.2.2 / 2.3.1 did,
and run it layer by layer in inference mode.

Import this module only after `compat.configure_theano()` and `compat.prepare_keras()`.
Only `keras_major_of` works without Keras.
"""
from __future__ import annotations

import contextlib
import json
import os

from backends.common import keras1_ordering
from backends.original_keras.graph import model_layers, model_nodes, plain_shape, source_name, weight_order_layers
from backends.common.errors import LambdaBytecodeError, ModelInputError

# Config keys and layer classes that exist only in Keras 1 model files.
# (Keras 2's Embedding keeps `output_dim`, so that name is no sign; `input_dtype` is Keras 1's `dtype`.)
_KERAS1_CONFIG_KEYS = {"nb_filter", "border_mode", "dim_ordering", "init", "W_regularizer", "input_dtype"}
_KERAS1_CLASSES = {"Merge", "Convolution1D", "Convolution2D", "Convolution3D", "AtrousConvolution2D"}
# Lambda's `function` and Merge's `mode`: the field a user-supplied function named after the layer replaces.
_MAIN_FUNCTION_FIELDS = {"function", "mode"}


def keras_major_of(model_json_text: str) -> int:
    """1 or 2: the Keras generation that wrote `model_json_text`, read from the JSON alone."""
    spec = _parse_json(model_json_text)
    version = spec.get("keras_version")
    if isinstance(version, str) and version[:1].isdigit():
        major = int(version.split(".")[0])
        if major not in (1, 2):
            raise ModelInputError(
                f"model.json was written by Keras {version}; the Theano backend runs only Keras 1 and 2 files",
                "compare it with a Keras 3 backend instead",
            )
        return major
    if isinstance(spec.get("config"), list) and spec.get("class_name") == "Sequential":
        return 1
    return 1 if any(_is_keras1_layer(layer) for layer in _layer_specs(spec)) else 2


def read_model_file(model_path: str, weights_path: str | None) -> tuple[str, str | None]:
    """(the model's JSON text, the weights file): a full-model HDF5 file (model.save('model.h5') of Keras 1 or 2)
    holds both, its architecture in the root attribute `model_config` (Keras 1.2 wrote its `keras_version`
    beside it, not in it) and its weights in the group `model_weights`, unless `weights_path` names others."""
    import h5py

    from backends.original_keras.compat import h5py2_view

    if not h5py.is_hdf5(model_path):
        with open(model_path, encoding="utf-8", errors="replace") as file:
            return file.read(), weights_path
    with h5py.File(model_path, "r") as h5:
        attrs = h5py2_view(h5).attrs
        if "model_config" not in attrs:
            raise ModelInputError(f"{model_path} holds weights only, no architecture (no 'model_config' attribute)",
                                  "pass the model JSON as the model and this file as the weights")
        spec = _parse_json(attrs["model_config"].decode("utf8"))
        if "keras_version" in attrs and not spec.get("keras_version"):
            spec["keras_version"] = attrs["keras_version"].decode("utf8")
    return json.dumps(spec), weights_path or model_path


def load_model(model_json_text: str, weights_path: str | None, custom_objects: dict, trust_lambda_bytecode: bool):
    """Build the model with this Keras and load `weights_path` into it as Keras itself did.

    Without `weights_path` the layers keep their freshly initialised weights.
    """
    import keras

    spec = keras1_layout(_parse_json(model_json_text), keras.__version__)
    _resolve_functions(spec, custom_objects, trust_lambda_bytecode)
    _translate_cudnn(spec)
    if written_by_tf_keras(spec):
        spec = from_tf_keras(spec)
    try:
        with _placeholder_initial_values(keras, weights_path is not None):
            model = keras.models.model_from_json(json.dumps(spec), custom_objects=custom_objects)
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise _cannot_build(exc) from exc
    if weights_path is not None:
        _load_weights(model, weights_path)
    return model


@contextlib.contextmanager
def _placeholder_initial_values(keras, weights_follow: bool):
    """While Keras 2.3.1 builds a model whose weights are loaded next, every weight starts as zeros instead of
    its initializer's draw. Keras 2.3.1's initializers are symbolic Theano random ops that K.variable
    evaluates, compiling one Theano function per weight: 0.3-0.4 s each, 40 s of a MobileNet's load and
    minutes of a DenseNet's, for values load_weights then overwrites, every one (Keras fails the load where
    the file lacks a layer's weights, and _check_weight_shapes checks what was assigned). Keras 1.2.2 draws
    its initial values with numpy: nothing to skip."""
    if not weights_follow or keras.__version__.startswith("1."):
        yield
        return
    import numpy as np
    from keras.engine import base_layer

    initializers = base_layer.initializers

    class Placeholders:
        def __getattr__(self, name):
            return getattr(initializers, name)

        @staticmethod
        def get(identifier):
            return lambda shape, dtype=None: np.zeros(shape, dtype=dtype or keras.backend.floatx())

    base_layer.initializers = Placeholders()
    try:
        yield
    finally:
        base_layer.initializers = initializers


def keras1_layout(spec: dict, keras_version: str) -> dict:
    """Under Keras 1, `spec` with an ordering stated in every layer that takes one: Keras 1 saved none for
    ZeroPadding2D, UpSampling2D, Cropping2D... and would take keras.json's. The rule is the one the Keras 3
    side uses (backends/common/keras1_ordering.py). Keras 2 files state every layer's data_format."""
    if not keras_version.startswith("1."):
        return spec
    version = spec.get("keras_version") if isinstance(spec.get("keras_version"), str) else keras_version
    return keras1_ordering.fill_dim_ordering(spec, version)[0]


def describe_layers(model) -> list[dict]:
    """Every layer but the inputs, in topological order, with its inbound layers, output shapes,
    output dtype and weight shapes."""
    described = []
    for layer in model_layers(model):
        inbound, output_shapes = [], []
        for node in model_nodes(model, layer):
            for source in node.inbound_layers:
                name = source_name(source)
                if name not in inbound:
                    inbound.append(name)
            output_shapes += [plain_shape(shape) for shape in node.output_shapes]
        outputs = [t for node in model_nodes(model, layer) for t in node.output_tensors]
        described.append({
            "name": layer.name,
            "class_name": type(layer).__name__,
            "inbound": inbound,
            "output_shapes": output_shapes,
            # for the coordinator's derived tolerances (kdiff.tolerances)
            "dtype": str(outputs[0].dtype) if outputs else None,
            "weight_shapes": [list(variable.get_value(borrow=True).shape) for variable in layer.weights],
        })
    return described


def input_specs(model) -> list[dict]:
    from keras import backend as K

    return [
        {"name": tensor._keras_history[0].name,
         "shape": list(plain_shape(K.int_shape(tensor))),
         "dtype": K.dtype(tensor)}
        for tensor in model.inputs
    ]


def forward_all(model, inputs: list) -> list[tuple[str, list]]:
    """Run `inputs` through the model once (learning phase 0) and return every layer's outputs.

    The function computing them is compiled on the first call and kept with the model (Theano's graph
    optimisation alone takes seconds for a deep model; the weights are shared variables, so a later
    set_weights reaches the compiled function)."""
    from keras import backend as K

    if len(inputs) != len(model.inputs):
        raise ModelInputError(f"the model has {len(model.inputs)} inputs but the sample gives {len(inputs)} arrays")
    compiled = getattr(model, "_kdiff_forward_all", None)
    if compiled is None:
        tensors_by_layer = [
            (layer.name, [t for node in model_nodes(model, layer) for t in node.output_tensors])
            for layer in model_layers(model)
        ]
        flat = [t for _, tensors in tensors_by_layer for t in tensors]
        compiled = (tensors_by_layer, K.function(list(model.inputs), flat))
        model._kdiff_forward_all = compiled
    tensors_by_layer, function = compiled
    values = function(list(inputs))
    results, start = [], 0
    for name, tensors in tensors_by_layer:
        results.append((name, list(values[start:start + len(tensors)])))
        start += len(tensors)
    return results


# --- model.json -------------------------------------------------------------------------


def _parse_json(text: str) -> dict:
    try:
        spec = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ModelInputError(f"model.json is not valid JSON: {exc}",
                              "give the file written by model.to_json() of Keras 1 or 2") from exc
    if not isinstance(spec, dict) or "class_name" not in spec or "config" not in spec:
        raise ModelInputError(
            "model.json is not a Keras model description (no top-level 'class_name' and 'config')",
            "write it with model.to_json() of Keras 1 or 2",
        )
    return spec


def _layer_specs(node):
    """Every {'class_name', 'config'} mapping inside a model spec whose config is a dict or a list
    (a Keras 1 Sequential's), nested ones included: the one walk of backends.common.keras1_ordering."""
    return (layer for layer in keras1_ordering.layer_entries(node) if isinstance(layer["config"], (dict, list)))


def _is_keras1_layer(spec: dict) -> bool:
    config = spec["config"]
    return spec["class_name"] in _KERAS1_CLASSES or (isinstance(config, dict) and bool(_KERAS1_CONFIG_KEYS & config.keys()))


def _resolve_functions(spec: dict, custom_objects: dict, trust_lambda_bytecode: bool) -> None:
    """Replace marshalled-bytecode functions (Lambda, Merge) with user-supplied ones, or refuse them.

    A field `F` with `F_type == "lambda"` holds bytecode. The user's function for a Lambda's
    `function` (a Merge's `mode`) is custom_objects[<layer name>]; for any other such field,
    e.g. `output_shape`, custom_objects["<layer name>_<F>"]. Fields stored by name
    (`F_type == "function"`) are looked up in custom_objects by Keras itself.
    """
    for layer in _layer_specs(spec):
        config = layer["config"]
        if not isinstance(config, dict):
            continue
        layer_name = config.get("name", layer["class_name"])
        for field in [key for key in config if config.get(f"{key}_type") == "lambda"]:
            key = layer_name if field in _MAIN_FUNCTION_FIELDS else f"{layer_name}_{field}"
            if key in custom_objects:
                config[field], config[f"{field}_type"] = key, "function"
            elif not trust_lambda_bytecode:
                error = LambdaBytecodeError(layer_name, "" if field in _MAIN_FUNCTION_FIELDS else field)
                error.hint = (f"supply it with --custom-objects FILE.py as a function named '{key}', or pass "
                              "--trust-lambda-bytecode if you trust this file and it was written by Python 3.11")
                raise error


# Keras 2.3.1's CuDNN layers run only on TensorFlow with a GPU; the plain layer with CuDNN's fixed functions
# computes the same, and Keras's own weight loading converts the CuDNN weights for it (_convert_rnn_weights).
_CUDNN_AS = {"CuDNNLSTM": ("LSTM", {}), "CuDNNGRU": ("GRU", {"reset_after": True})}


def _translate_cudnn(spec: dict) -> None:
    for layer in _layer_specs(spec):
        if layer["class_name"] in _CUDNN_AS and isinstance(layer["config"], dict):
            class_name, extra = _CUDNN_AS[layer["class_name"]]
            layer["class_name"] = class_name
            layer["config"].update(activation="tanh", recurrent_activation="sigmoid", use_bias=True, **extra)


def written_by_tf_keras(spec: dict) -> bool:
    """A Keras 2 config written by TensorFlow's own Keras (tf.keras: '2.2.4-tf', 2.4 and later, tf_keras)."""
    version = spec.get("keras_version")
    if not isinstance(version, str) or not version.startswith("2."):
        return False
    minor = "".join(c for c in version.split(".")[1] if c.isdigit()) if "." in version else ""
    return version.endswith("-tf") or (minor.isdigit() and int(minor) >= 4)


# tf.keras layer settings Keras 2.3.1 lacks, and the value at which they change nothing
_TF_KERAS_NEUTRAL = {"groups": 1, "ragged": False, "optional": False, "sparse": False}


def from_tf_keras(spec: dict) -> dict:
    """A tf.keras 2.x config in Keras 2.3.1's terms: 'Functional' is 'Model'; settings tf.keras added are
    dropped where they hold the value that changes nothing (Conv2D groups=1, InputLayer ragged=False), and any
    other refused; initializers Keras 2.3.1 has only as functions ('GlorotUniform') are named as those (they
    do not matter once the stored weights are loaded); a dtype policy is its dtype."""
    import inspect

    import keras

    spec = json.loads(json.dumps(spec))
    base = {"input_shape", "batch_input_shape", "batch_size", "dtype", "name", "trainable", "weights"}
    for layer in [spec, *_layer_specs(spec)]:
        if layer.get("class_name") == "Functional":
            layer["class_name"] = "Model"
        cls, config = getattr(keras.layers, str(layer.get("class_name")), None), layer.get("config")
        if cls is None or not isinstance(config, dict) or not inspect.isclass(cls):
            continue
        accepted = set(inspect.signature(cls.__init__).parameters) | base
        for key in [key for key in config if key not in accepted]:
            if key in _TF_KERAS_NEUTRAL and config[key] == _TF_KERAS_NEUTRAL[key]:
                del config[key]
            elif key not in _TF_KERAS_NEUTRAL:
                continue   # Keras refuses it when it builds the layer, naming it
            else:
                raise ModelInputError(
                    f"layer '{config.get('name')}' ({layer['class_name']}) has {key}={config[key]!r}, which Keras "
                    f"{keras.__version__} cannot build", "compare this tf.keras file on tf-keras and a Keras 3 backend")
        if isinstance(config.get("dtype"), dict):
            config["dtype"] = (config["dtype"].get("config") or {}).get("name", "float32")
        for key, value in config.items():
            if key.endswith("_initializer") and isinstance(value, dict) and \
                    not hasattr(keras.initializers, str(value.get("class_name"))):
                snake = "".join("_" + c.lower() if c.isupper() else c for c in value["class_name"]).lstrip("_")
                if hasattr(keras.initializers, snake):
                    value["class_name"] = snake
    return spec


def _cannot_build(exc: Exception) -> ModelInputError:
    import keras

    return ModelInputError(
        f"Keras {keras.__version__} could not build the model from model.json: {type(exc).__name__}: {exc}",
        "if the model uses custom layers or functions, supply them with --custom-objects FILE.py",
    )


# --- weights.h5 -------------------------------------------------------------------------


def _load_weights(model, weights_path: str) -> None:
    """Keras's own topological loading (with its conversions), reading the file through h5py 3."""
    import h5py
    import keras

    from backends.original_keras.compat import h5py2_view

    if not os.path.isfile(weights_path):
        raise ModelInputError(f"weights file not found: {weights_path}", "check the path given for weights.h5")
    try:
        with h5py.File(weights_path, "r") as h5:
            root = h5py2_view(h5)
            if "layer_names" not in root.attrs and "model_weights" in root:
                root = root["model_weights"]  # a whole-model file from model.save()
            if "layer_names" not in root.attrs:
                raise ModelInputError(f"{weights_path} is not a Keras weights file (no 'layer_names' attribute)",
                                      "write it with model.save_weights() or model.save() of Keras 1 or 2")
            try:
                if keras.__version__.startswith("1."):
                    model.load_weights_from_hdf5_group(root)
                else:
                    from keras.engine.saving import load_weights_from_hdf5_group

                    load_weights_from_hdf5_group(root, model.layers)
            except ValueError as exc:
                raise ModelInputError(f"{weights_path} does not fit the model: {exc}{_first_difference(model, root)}",
                                      "use the weights.h5 saved together with this model.json") from exc
            _check_weight_shapes(model, root, weights_path)
    except (OSError, KeyError) as exc:
        raise ModelInputError(f"cannot read weights from {weights_path}: {exc}",
                              "the HDF5 file is truncated, corrupt or not a Keras weights file") from exc


def _check_weight_shapes(model, root, weights_path: str) -> None:
    """Theano accepts a value of any shape for a variable: check what Keras just assigned."""
    for layer, file_layer, _ in _paired_layers(model, root):
        for variable in layer.weights:
            expected, loaded = tuple(variable._keras_shape), variable.get_value(borrow=True).shape
            if expected != loaded:
                raise ModelInputError(
                    f"{weights_path} does not fit layer '{layer.name}' ({type(layer).__name__}): weight "
                    f"'{variable.name}' has shape {expected} in the model but {loaded} in the file's layer "
                    f"'{file_layer}' (Keras matches weighted layers by position)",
                    "use the weights.h5 saved together with this model.json",
                )


def _first_difference(model, root) -> str:
    """Where the file's stored shapes first differ from the model's, to explain Keras's error."""
    for layer, file_layer, file_shapes in _paired_layers(model, root):
        model_shapes = [tuple(variable._keras_shape) for variable in layer.weights]
        if model_shapes != file_shapes:
            return (f"; first difference: layer '{layer.name}' ({type(layer).__name__}) has weights of shapes "
                    f"{model_shapes}, the file's layer '{file_layer}' (matched by position) holds {file_shapes}")
    return ""


def _paired_layers(model, root) -> list[tuple]:
    """(model layer, file layer name, stored weight shapes), paired by position as Keras loads them."""
    weighted_layers = [layer for layer in weight_order_layers(model) if layer.weights]
    file_layers = [name for name in _text_list(root, "layer_names") if _text_list(root[name], "weight_names")]
    return [
        (layer, name, [tuple(root[name][weight].shape) for weight in _text_list(root[name], "weight_names")])
        for layer, name in zip(weighted_layers, file_layers)
    ]


def _text_list(group, attribute: str) -> list[str]:
    """A list-of-names attribute; Keras 2 splits long ones into `name0`, `name1`, ..."""
    if attribute in group.attrs:
        chunks = [group.attrs[attribute]]
    else:
        chunks, index = [], 0
        while f"{attribute}{index}" in group.attrs:
            chunks.append(group.attrs[f"{attribute}{index}"])
            index += 1
    return [name.decode("utf8") for chunk in chunks for name in chunk]
