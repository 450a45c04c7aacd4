"""What the coordinator can learn from the user's files without any framework: which Keras
wrote the model, which layers it uses, what input it declares, whether the weights file is
a readable Keras HDF5 file, and whether the sample fits. Bad input fails here, before any
environment or worker is started."""
from __future__ import annotations

import functools
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kdiff.protocol import layer_catalog
from kdiff import full_model_h5
from kdiff.custom_objects import defined_names
from kdiff.errors import InputError
from kdiff.model_checks import (check_layer_config, check_listed_weights, check_unique_names, parse_model_json,
                                 weights_warnings)
from kdiff.preflight import readable_file

SUPPORTED_LAYERS = layer_catalog.SUPPORTED_LAYERS  # the one list, shared with the Keras 3 translation
KERAS1_ONLY_KEYS = frozenset({"nb_filter", "border_mode", "dim_ordering", "output_dim", "subsample", "init",
                              "nb_row", "filter_length", "subsample_length", "consume_less", "W_regularizer"})


@dataclass(frozen=True)
class ModelFile:
    path: Path
    format: str                # "keras-json", "keras-h5" (a full-model file, model.save()) or "keras3-archive"
    keras_major: int           # 1, 2 or 3
    keras_version: str         # as written in the file, "" when it says none
    layer_classes: tuple       # every layer class used, nested models included
    input_shapes: tuple        # declared input shapes without the batch dimension (None: unknown)
    data_format: str = ""      # the layout its image layers state: channels_first/channels_last, "" for none or mixed
    flatten_formats: tuple = ()  # (Flatten layer name, its stated data_format or ""), for every Flatten
    warnings: tuple = ()       # what in the files is accepted but worth saying (integer or non-finite weights)
    integer_input: bool = False  # the model takes integer ids (an Embedding first, or an integer InputLayer)
    tf_keras: bool = False     # a Keras 2 file written by TensorFlow's own Keras (tf.keras 2.x), never run on Theano
    custom_classes: tuple = ()  # layer classes of the user's own, defined in the --custom-objects file


def inspect_model(model_path: str, weights_path: str | None, custom_objects: str | None = None) -> ModelFile:
    """``custom_objects``: the --custom-objects file, whose classes may be the model's layers."""
    path = Path(model_path)
    if not path.exists():
        raise InputError("model-not-found", f"model file not found: {model_path}", "check the path")
    readable_file(model_path, "model file", "a model.json or .keras file")
    if path.suffix == ".keras":
        return _inspect_keras3_archive(path, weights_path)
    # a full-model HDF5 file (model.save('model.h5')): the architecture and the weights in one
    full = full_model_h5.read_full_model(path) if full_model_h5.is_hdf5(path) else None
    config = full.model_config if full else parse_model_json(path.read_bytes(), path.name)
    if not isinstance(config, dict) or "class_name" not in config or "config" not in config:
        raise InputError("model-json-shape", f"{path.name} is JSON but not a Keras model description",
                         "expected an object with 'class_name' and 'config', as model.to_json() writes it")
    layers = list(_walk_layers(config))
    unknown = sorted({cls for cls, _, _ in layers if cls not in SUPPORTED_LAYERS})
    own = defined_names(custom_objects) if custom_objects and unknown else frozenset()
    unsupported = [cls for cls in unknown if cls not in own]
    if unsupported:
        if custom_objects:
            raise InputError("unsupported-layer", f"not supported yet, nor defined in {custom_objects}: "
                             f"{', '.join(unsupported)}", f"if it is a layer class of your own, define it in "
                             f"{custom_objects} (for both sides' Keras); else please open an issue with the model file")
        raise InputError("unsupported-layer", f"not supported yet: {', '.join(unsupported)}",
                         "if it is a layer class of your own, define it in a Python file and pass --custom-objects "
                         "FILE.py; else kdiff cannot build it yet: please open an issue with the model file")
    attrs = _weights_attrs(weights_path or model_path) if weights_path or full else {}
    version = str(config.get("keras_version") or attrs.get("keras_version") or "")
    backend = full.backend if full and full.backend else str(attrs.get("backend", ""))
    return ModelFile(
        path=path, format="keras-h5" if full else "keras-json", keras_major=_keras_major(config, layers, version),
        keras_version=version, tf_keras=full_model_h5.written_by_tf_keras(version, backend),
        layer_classes=tuple(sorted({cls for cls, _, _ in layers})), input_shapes=_declared_inputs(config, layers),
        data_format=_stated_layout(layers), flatten_formats=_flatten_formats(layers),
        warnings=tuple(attrs.get("warnings", ())), integer_input=_takes_integers(layers),
        custom_classes=tuple(cls for cls in unknown if cls in own),
    )


def _inspect_keras3_archive(path: Path, weights_path: str | None) -> ModelFile:
    try:
        with zipfile.ZipFile(path) as archive:
            config = parse_model_json(archive.read("config.json"), f"{path.name}'s config.json")
            metadata = parse_model_json(archive.read("metadata.json"), f"{path.name}'s metadata.json") \
                if "metadata.json" in archive.namelist() else {}
    except (zipfile.BadZipFile, zipfile.LargeZipFile, KeyError, OSError, RuntimeError, ValueError, EOFError) as exc:
        raise InputError("model-archive", f"{path.name} is not a readable Keras 3 .keras file: {exc}",
                         "pass a file written by model.save('name.keras')") from exc
    for part, value in (("config.json", config), ("metadata.json", metadata)):
        if not isinstance(value, dict):
            raise InputError("model-archive", f"{path.name}'s {part} holds a JSON {type(value).__name__}, not an "
                             "object", "pass a file written by model.save('name.keras')")
    attrs = _weights_attrs(weights_path) if weights_path else {}
    layers = list(_walk_layers(config))
    return ModelFile(path=path, format="keras3-archive", keras_major=3,
                     keras_version=str(metadata.get("keras_version", "")),
                     layer_classes=tuple(sorted({cls for cls, _, _ in layers})),
                     input_shapes=_declared_inputs(config, layers),
                     data_format=_stated_layout(layers), flatten_formats=_flatten_formats(layers),
                     warnings=tuple(attrs.get("warnings", ())), integer_input=_takes_integers(layers))


def _walk_layers(model_config: dict):
    """(class_name, layer_config, is_first_layer_of_a_sequential) for every layer, recursively."""
    inner = model_config.get("config")
    layers = inner if isinstance(inner, list) else (inner or {}).get("layers", []) if isinstance(inner, dict) else []
    sequential = model_config.get("class_name") == "Sequential"
    if not isinstance(layers, list):
        raise InputError("model-json-shape", f"the model's 'layers' is {type(layers).__name__}, not a list",
                         "the file may be damaged; write it again with model.to_json()")
    names = []
    for position, layer in enumerate(layers):
        if not isinstance(layer, dict) or not isinstance(layer.get("class_name"), str):
            raise InputError("model-json-shape", "a layer entry in the model JSON has no 'class_name'",
                             "the file may be damaged; write it again with model.to_json()")
        cls = layer["class_name"]
        container = cls in ("Sequential", "Model", "Functional")
        config = layer.get("config", {})
        if not container:  # (a nested model's config may be a Keras 1 list of layers)
            check_layer_config(cls, config, f"layer {position} ({cls})")
        config = config if isinstance(config, dict) else {}
        name = config.get("name") or layer.get("name")
        if isinstance(name, str):
            names.append(name)
        yield cls, config, sequential and position == 0
        if container:
            yield from _walk_layers(layer)
        elif cls in ("Bidirectional", "TimeDistributed") and isinstance(config.get("layer"), dict):
            wrapped = config["layer"]
            check_layer_config(wrapped["class_name"], wrapped.get("config", {}), f"the layer {cls} wraps")
            yield wrapped["class_name"], wrapped.get("config") or {}, False
            if wrapped.get("class_name") == "RNN":
                yield from _rnn_cells(wrapped.get("config") or {})
        elif cls == "RNN":
            yield from _rnn_cells(config)
    check_unique_names(names, f"model '{model_config.get('config', {}).get('name', '')}'"
                       if isinstance(model_config.get("config"), dict) else "the model")


def _rnn_cells(rnn_config: dict):
    """The cells of an RNN layer's config (a StackedRNNCells' too), as layers of their own."""
    cell = rnn_config.get("cell")
    cells = cell if isinstance(cell, list) else [cell]
    for cell in cells:
        if isinstance(cell, dict):
            cell_config = cell.get("config") if isinstance(cell.get("config"), dict) else {}
            yield str(cell.get("class_name", "?")), cell_config, False
            if cell.get("class_name") == "StackedRNNCells":
                yield from _rnn_cells({"cell": cell_config.get("cells") or []})


def _keras_major(config: dict, layers: list, version: str) -> int:
    if version[:1] in "123" and version:
        return int(version[0])
    if any("module" in str(key) for key in config) or "registered_name" in json.dumps(config)[:20000]:
        return 3
    if isinstance(config.get("config"), list) or any(KERAS1_ONLY_KEYS & set(c) for _, c, _ in layers):
        return 1
    return 2


LAYOUT_NAMES = {"th": "channels_first", "tf": "channels_last",
                "channels_first": "channels_first", "channels_last": "channels_last"}


def _stated_layout(layers: list) -> str:
    """The one layout the image (2D/3D) layers state, "" when none states one or they disagree."""
    stated = {LAYOUT_NAMES.get(config.get("data_format") or config.get("dim_ordering"))
              for cls, config, _ in layers if cls.endswith(("2D", "3D"))}
    stated.discard(None)
    return stated.pop() if len(stated) == 1 else ""


def _flatten_formats(layers: list) -> tuple:
    return tuple((str(config.get("name", "")), str(config.get("data_format") or ""))
                 for cls, config, _ in layers if cls == "Flatten")


def _declared_inputs(config: dict, layers: list) -> tuple:
    shapes = []
    for cls, layer_config, first_of_sequential in layers:
        shape = layer_config.get("batch_input_shape") or layer_config.get("batch_shape")
        if shape and (cls == "InputLayer" or first_of_sequential):
            shapes.append(tuple(shape[1:]))
    return tuple(shapes)


def _takes_integers(layers: list) -> bool:
    first = next(((cls, config) for cls, config, _ in layers if cls not in ("InputLayer", "Sequential", "Model",
                                                                           "Functional")), ("", {}))
    declared = next((config.get("dtype") for cls, config, _ in layers if cls == "InputLayer"), None)
    return first[0] == "Embedding" or (isinstance(declared, str) and declared.startswith(("int", "uint")))


def _weights_attrs(weights_path: str) -> dict:
    path = Path(weights_path)
    if not path.exists():
        raise InputError("weights-not-found", f"weights file not found: {weights_path}", "check the path")
    readable_file(weights_path, "weights file", "the HDF5 file model.save_weights(...) wrote")
    stat = path.stat()
    return dict(_read_weights_attrs(str(path.resolve()), stat.st_size, stat.st_mtime_ns))


@functools.lru_cache(maxsize=8)
def _read_weights_attrs(weights_path: str, size: int, mtime_ns: int) -> dict:
    """(The file is read once however often it is inspected: its size and time are part of the key.)"""
    import h5py  # kdiff's own dependency; only needed when a weights file is given

    path = Path(weights_path)
    try:
        with h5py.File(path, "r") as handle:
            group = handle["model_weights"] if "model_weights" in handle else handle
            attrs = {key: _text(value) for key, value in group.attrs.items() if key in ("backend", "keras_version")}
            if "layer_names" not in group.attrs and "vars" not in handle and "layers" not in handle \
                    and "_layer_checkpoint_dependencies" not in handle:
                raise InputError("weights-not-keras", f"{path.name} is HDF5 but holds no Keras weights",
                                 "pass the file written by model.save_weights(...)")
            check_listed_weights(group, path.name)
            attrs["warnings"] = weights_warnings(handle)
            return attrs
    except (OSError, RuntimeError, ValueError, KeyError, TypeError) as exc:  # h5py's errors for a damaged file
        raise InputError("weights-unreadable", f"{path.name} is not a readable HDF5 file ({exc})",
                         "the file may be truncated or not HDF5; write it again with model.save_weights(...)") from exc


def _text(value) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def load_sample(sample_path: str, model: ModelFile) -> np.ndarray:
    """The sample array, checked against the model's declared input shape."""
    path = Path(sample_path)
    sample = _numeric_npy(path, "sample", "a numeric array (float32, or integer ids for an Embedding input)")
    if len(model.input_shapes) == 1:
        expected = model.input_shapes[0]
        if len(expected) + 1 != sample.ndim or any(e is not None and e != s for e, s in zip(expected, sample.shape[1:])):
            shown = ", ".join("?" if e is None else str(e) for e in expected)
            raise InputError("sample-shape", f"{path.name} has shape {sample.shape} but the model expects "
                             f"(batch, {shown})", "save the sample in the model's input shape, batch first")
    if sample.ndim == 0 or sample.shape[0] == 0:
        raise InputError("sample-shape", f"{path.name} holds no samples (shape {sample.shape})",
                         "save at least one sample, batch first")
    return sample


def load_labels(label_paths: list[str], batch: int) -> list[np.ndarray]:
    """The label arrays for a named loss, one per model output, each with the sample's batch size."""
    labels = []
    for label_path in label_paths:
        path = Path(label_path)
        array = _numeric_npy(path, "labels", "a numeric array: class ids, one-hot rows or regression targets")
        if array.ndim == 0 or array.shape[0] != batch:
            raise InputError("labels-shape", f"{path.name} has shape {array.shape}: its first axis should be the "
                             f"sample's batch of {batch}", "save one label per sample, batch first")
        labels.append(array)
    return labels


def _numeric_npy(path: Path, role: str, wanted: str) -> np.ndarray:
    """A .npy file's numeric array, loaded without unpickling; `role` names it in errors ('sample', 'labels')."""
    if not path.is_file():
        raise InputError(f"{role}-not-found", f"{role} file not found: {path}", "check the path")
    try:
        array = np.load(path, allow_pickle=False)
    except ValueError as exc:
        raise InputError(f"{role}-unreadable", f"{path.name} cannot be read without unpickling ({exc})",
                         "save a plain numeric array with numpy.save(path, array)") from exc
    except (OSError, EOFError, zipfile.BadZipFile, RuntimeError) as exc:
        raise InputError(f"{role}-unreadable", f"{path.name} is not a .npy file ({exc or type(exc).__name__})",
                         f"save the {role} with numpy.save(path, array)") from exc
    if not isinstance(array, np.ndarray):
        getattr(array, "close", lambda: None)()
        raise InputError(f"{role}-dtype", f"{path.name} is an archive of several arrays (.npz), not one array",
                         f"save {wanted} with numpy.save(path, array)")
    if array.dtype.kind not in "biuf":
        raise InputError(f"{role}-dtype", f"{path.name} holds {getattr(array, 'dtype', type(array))}, not numbers",
                         f"save {wanted}")
    return array
