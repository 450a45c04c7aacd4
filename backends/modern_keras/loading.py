"""The modern-Keras worker's entry points: load a model, describe it, run it.

`keras` is the module the worker imported: Keras 3 (`import keras`, with KERAS_BACKEND set
to tensorflow, jax or torch before the import) or `tf_keras`.

Model files understood:
- Keras 1/2 JSON (`model.to_json()`), with weights from a Keras 1/2 `.h5` file;
- a Keras 1/2 full-model `.h5` (`model.save()`): config and weights in one file;
- Keras 3 JSON, with Keras 3 `.weights.h5` weights;
- a Keras 3 `.keras` file (safe mode unless the user trusts the file).
"""
from __future__ import annotations

import json
import os
import weakref

import h5py
import numpy as np

from backends.common.errors import ModelInputError
from backends.modern_keras import legacy_config, legacy_weights
from backends.modern_keras.build import build_model
from backends.modern_keras.graph import dtype_name, history, keras_module, layer_calls, masked_layers, tensor_shape

# Kept beside each loaded model, not on it (Keras tracks attributes set on a model, and
# saving it would then change): the legacy file's root attributes, the capture model.
_STORED_ATTRS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_CAPTURE_MODELS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def load_model(keras, model_path: str, weights_path: str | None, custom_objects: dict,
               trust_lambda_bytecode: bool, layout: str | None = None):
    """The model; with ``layout``, a Keras 1/2 file is built in that memory layout (see layout.py)."""
    if not os.path.isfile(model_path):
        raise ModelInputError(f"model file not found: {model_path}")
    if weights_path is not None and not os.path.isfile(weights_path):
        raise ModelInputError(f"weights file not found: {weights_path}")
    if layout and (model_path.endswith(".keras") or not _is_legacy_file(model_path)):
        raise ModelInputError(f"{model_path} is a Keras 3 file, which is built in the layout it states",
                              "--b-layout rebuilds Keras 1/2 files only; pass a Keras 3 port as it is")
    _register(keras, custom_objects)
    if model_path.endswith(".keras"):
        model, attrs = _load_keras3_file(keras, model_path, custom_objects, trust_lambda_bytecode), None
    elif h5py.is_hdf5(model_path):
        model, attrs = _load_full_legacy_h5(keras, model_path, custom_objects,
                                            trust_lambda_bytecode, weights_path, layout)
    else:
        model, attrs = _load_json(keras, model_path, weights_path, custom_objects,
                                  trust_lambda_bytecode, layout)
    if attrs is None and weights_path is not None:   # weights not loaded yet: Keras 3 weights
        attrs = _load_weights_file(keras, model, weights_path)
    _STORED_ATTRS[model] = attrs or {}
    return model


def stored_attrs(model) -> dict:
    """The legacy weights file's 'backend' and 'keras_version' (empty for Keras 3 files)."""
    return _STORED_ATTRS.get(model, {})


def _read_text(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as file:
            return file.read()
    except UnicodeDecodeError:
        raise ModelInputError(f"{path} is neither JSON, HDF5 nor a .keras file",
                              "pass model.json, model.h5 or model.keras") from None


def _is_keras3_config(config: dict) -> bool:
    version = str(config.get("keras_version", ""))
    return version.startswith("3") or "module" in config or "registered_name" in config


def _is_legacy_file(path: str) -> bool:
    """A Keras 1/2 JSON or full-model HDF5 file (not a Keras 3 one)."""
    if h5py.is_hdf5(path):
        return True
    try:
        config = json.loads(_read_text(path))
    except ValueError:
        return True  # reported as not JSON when it is read
    return not (isinstance(config, dict) and _is_keras3_config(config))


def _register(keras, custom_objects: dict) -> None:
    """Make the user's functions and classes known to this worker's Keras by name, so a layer
    config naming one (an activation such as 'gelu_tanh', a custom layer) builds, and so does a
    copy of the layer made from its config (repairs, saving). A worker holds one model."""
    from backends.modern_keras.extra_layer_classes import layer_classes

    layer_classes(keras)  # kdiff's own layers ("kdiff>Highway", ...), which files kdiff wrote may hold
    if hasattr(keras, "ops"):
        from backends.modern_keras.theano_pooling import theano_pooling_class

        theano_pooling_class(keras)  # ("kdiff>TheanoSamePooling")
    registry = keras.saving.get_custom_objects() if hasattr(keras, "saving") and hasattr(
        keras.saving, "get_custom_objects") else keras.utils.get_custom_objects()
    registry.update(custom_objects)


def _built(keras, description, custom_objects, trust, layout):
    """The model built from the description, in ``layout`` when one is asked for."""
    if layout:
        from backends.modern_keras.layout import in_layout

        description = in_layout(description, layout)
    return build_model(keras, description, custom_objects, trust)


def _load_json(keras, path, weights_path, custom_objects, trust, layout=None):
    text = _read_text(path)
    try:
        config = json.loads(text)
    except ValueError as error:
        raise ModelInputError(f"{path} is not valid JSON: {error}",
                              "pass the JSON written by model.to_json()") from None
    if isinstance(config, dict) and _is_keras3_config(config):
        return _load_keras3_json(keras, text, custom_objects, trust), None
    description = legacy_config.parse_model_config(config, legacy_config.custom_layer_classes(custom_objects))
    if weights_path is None:
        raise ModelInputError(f"{path} holds a Keras {description.keras_major} architecture "
                              "without weights", "pass its weights file (.h5) as well")
    model = _built(keras, description, custom_objects, trust, layout)
    if not h5py.is_hdf5(weights_path):
        raise ModelInputError(f"weights file {weights_path} is not HDF5 (or is truncated)",
                              "pass the .h5 file written by model.save_weights()")
    if not _is_legacy_weights_file(weights_path):   # e.g. tf_keras JSON + .weights.h5
        return model, _load_weights_file(keras, model, weights_path)
    stored = legacy_weights.read_legacy_weights(weights_path)
    legacy_weights.load_legacy_weights(model, description, stored)
    return model, stored.attrs


def _is_legacy_weights_file(path: str) -> bool:
    try:
        with h5py.File(path, "r") as file:
            return "layer_names" in file.attrs or "model_weights" in file
    except OSError as error:
        raise ModelInputError(f"cannot read weights file {path}: {error}",
                              "the file is not HDF5 or is truncated") from None


def _load_keras3_file(keras, path, custom_objects, trust):
    try:
        return keras.models.load_model(path, custom_objects=custom_objects, compile=False,
                                       safe_mode=not trust)
    except ValueError as error:
        if "safe_mode" in str(error):
            raise ModelInputError(f"{path} holds a Lambda layer's code: {error}",
                                  "supply the function with --custom-objects FILE.py, or pass "
                                  "--trust-lambda-bytecode if you trust this file") from None
        raise


def _load_keras3_json(keras, text, custom_objects, trust):
    if trust and hasattr(keras, "config") and hasattr(keras.config, "enable_unsafe_deserialization"):
        keras.config.enable_unsafe_deserialization()
    return keras.models.model_from_json(text, custom_objects=custom_objects)


def _load_full_legacy_h5(keras, path, custom_objects, trust, weights_path, layout=None):
    """A Keras 1/2 `model.save()` file -> (model, stored attrs). A separate Keras 1/2
    weights file, when given, replaces the weights stored in the model file."""
    with h5py.File(path, "r") as file:
        if "model_config" not in file.attrs:
            raise ModelInputError(f"{path} holds weights only, no model architecture",
                                  "pass the model JSON (or a full-model file) as the model, "
                                  "and this file as the weights")
        config = json.loads(legacy_weights.text(file.attrs["model_config"]))
        description = legacy_config.parse_model_config(config, legacy_config.custom_layer_classes(custom_objects))
        model = _built(keras, description, custom_objects, trust, layout)
        if weights_path is None:
            stored = legacy_weights.read_weights_group(
                file["model_weights"], {**file.attrs, **file["model_weights"].attrs})
    if weights_path is not None:
        stored = legacy_weights.read_legacy_weights(weights_path)
    legacy_weights.load_legacy_weights(model, description, stored)
    return model, stored.attrs


def _load_weights_file(keras, model, weights_path: str) -> dict:
    """Weights for a Keras 3 model: Keras 3 `.weights.h5`."""
    if not h5py.is_hdf5(weights_path):
        raise ModelInputError(f"weights file {weights_path} is not HDF5 (or is truncated)")
    if _is_legacy_weights_file(weights_path):
        raise ModelInputError(
            f"{weights_path} holds Keras 1/2 weights, but the model is a Keras 3 model",
            "pass the Keras 1/2 model JSON with these weights")
    try:
        model.load_weights(weights_path)
    except ValueError as error:
        raise ModelInputError(f"weights in {weights_path} do not fit the model: {error}") from None
    return {}


# ---- describing and running a model ---------------------------------------------------

def describe_layers(model) -> list[dict]:
    """Every layer's name, class, inbound layers and output shapes; with its output dtype and its
    weights' shapes, from which the coordinator derives the layer's tolerance (kdiff.tolerances)."""
    masked = masked_layers(model)
    return [{"name": layer.name, "class_name": type(layer).__name__, "inbound": inbound,
             "output_shapes": [tensor_shape(t) for t in outputs],
             "dtype": dtype_name(outputs[0].dtype) if outputs else None,
             "weight_shapes": [[int(d) for d in variable.shape] for variable in layer.weights],
             **({"masked": True} if layer.name in masked else {})}
            for layer, outputs, inbound in layer_calls(model)]


def input_specs(model) -> list[dict]:
    specs = []
    for tensor in model.inputs:
        dtype = tensor.dtype
        specs.append({"name": history(tensor)[0].name, "shape": list(tensor_shape(tensor)),
                      "dtype": getattr(dtype, "name", str(dtype))})
    return specs


def _capture_model(model):
    """A model with the same inputs that returns every layer's outputs (built once)."""
    if model in _CAPTURE_MODELS:
        return _CAPTURE_MODELS[model]
    calls = layer_calls(model)
    outputs = [tensor for _, tensors, _ in calls for tensor in tensors]
    keras = keras_module(model)
    capture = keras.Model(inputs=model.inputs, outputs=outputs)
    _CAPTURE_MODELS[model] = (capture, [(layer.name, len(tensors)) for layer, tensors, _ in calls])
    return _CAPTURE_MODELS[model]


def forward_all(model, inputs: list) -> list[tuple[str, list]]:
    """Every layer's outputs (numpy) in inference mode, in describe_layers order."""
    capture, counts = _capture_model(model)
    arrays = [np.asarray(x) for x in inputs]
    results = capture.predict_on_batch(arrays[0] if len(arrays) == 1 else arrays)
    if not isinstance(results, (list, tuple)):
        results = [results]
    results = [np.asarray(r) for r in results]
    out, position = [], 0
    for name, count in counts:
        out.append((name, results[position:position + count]))
        position += count
    return out
