"""Load Keras 1/2 HDF5 weights onto a built model, *as stored*.

kdiff shows what a port that copies the weights gets, so values are never changed (no
convolution kernel flip, no Dense row permutation after Flatten). Only the layout moves a
tensor's shape forces are made, exactly as Keras 2's `preprocess_weights_for_loading` made
them for Keras 1 files:
- Keras 1 'th' Conv2D/Conv3D kernels (out, in, rows, cols[, depth]) -> (rows, cols, ..., in, out);
- Keras 1 Deconvolution2D kernels ('th' (out, in, rows, cols), 'tf' (rows, cols, in, out)) ->
  Keras 2's Conv2DTranspose layout (rows, cols, out, in);
- Keras 1 'th' SeparableConvolution2D kernels (multiplier, in, rows, cols) and (out, in·multiplier,
  1, 1) -> (rows, cols, in, multiplier) and (1, 1, in·multiplier, out) (Keras 1 had it on TensorFlow
  only, which read them so);
- Keras 1 Conv1D kernels (k, 1, in, out) (1.1: (out, in, k, 1)) -> (k, in, out);
- Keras 1 LSTM/GRU per-gate arrays -> one kernel, recurrent kernel and bias in Keras 2
  gate order (LSTM i, f, c, o from the stored i, c, f, o; GRU z, r, h);
- Keras 1 BatchNormalization [gamma, beta, running_mean, running_std] -> gamma, beta,
  moving_mean, moving_variance (running_std always held the variance).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import h5py
import numpy as np

from backends.common.errors import ModelInputError
from backends.modern_keras.legacy_config import LayerSpec, ModelDescription, keras3_name

CONV_CLASSES = ("Conv1D", "Conv2D", "Conv3D", "Conv2DTranspose")  # Keras 2's list for its fallback


@dataclass
class StoredLayer:
    name: str
    weight_names: list[str]
    arrays: list[np.ndarray]


@dataclass
class StoredWeights:
    layers: list[StoredLayer]          # layers that have weights, in file order
    attrs: dict = field(default_factory=dict)   # 'backend', 'keras_version' when stored

    @property
    def keras_major(self) -> int | None:
        version = self.attrs.get("keras_version", "")
        return int(version[0]) if version[:1].isdigit() else None


def text(value) -> str:
    return value.decode("utf8") if isinstance(value, bytes) else str(value)


def read_legacy_weights(path: str) -> StoredWeights:
    """Weights of a Keras 1/2 `save_weights` file, or of a full-model `.h5` file."""
    try:
        with h5py.File(path, "r") as file:
            group = file["model_weights"] if "layer_names" not in file.attrs and \
                "model_weights" in file else file
            if "layer_names" not in group.attrs:
                raise ModelInputError(
                    f"{path} is an HDF5 file but not Keras 1/2 weights (no 'layer_names')",
                    "pass the file written by Keras 1/2 model.save_weights() or model.save()")
            return read_weights_group(group, {**file.attrs, **group.attrs})
    except OSError as error:
        raise ModelInputError(f"cannot read weights file {path}: {error}",
                              "the file is missing, not HDF5, or truncated") from None


def read_weights_group(group: h5py.Group, attrs) -> StoredWeights:
    layers = []
    for layer_name in (text(n) for n in group.attrs["layer_names"]):
        layer_group = group[layer_name]
        names = [text(n) for n in layer_group.attrs.get("weight_names", [])]
        if names:
            layers.append(StoredLayer(layer_name, names, [np.asarray(layer_group[n]) for n in names]))
    kept = {key: text(attrs[key]) for key in ("backend", "keras_version") if key in attrs}
    return StoredWeights(layers, kept)


def load_legacy_weights(model, description: ModelDescription, stored: StoredWeights) -> None:
    """Set every weighted layer of `model` from `stored`, or raise ModelInputError."""
    keras_major = stored.keras_major or description.keras_major
    weighted = [spec for spec in description.layers
                if spec.class_name != "InputLayer" and model.get_layer(spec.name).weights]
    for spec, stored_layer in _pair_layers(weighted, stored.layers):
        _assign(spec, model.get_layer(spec.name), stored_layer, keras_major)


def _pair_layers(weighted: list[LayerSpec], stored: list[StoredLayer]):
    """By name; by order when no name matches and the counts agree (as Keras did)."""
    model_names = [spec.name for spec in weighted]
    file_names = [keras3_name(layer.name) for layer in stored]  # (the description's names: legacy_config)
    if set(model_names) == set(file_names):
        by_name = {keras3_name(layer.name): layer for layer in stored}
        return [(spec, by_name[spec.name]) for spec in weighted]
    if not set(model_names) & set(file_names) and len(model_names) == len(file_names):
        return list(zip(weighted, stored))
    raise ModelInputError(
        "the weights file does not fit this model: layers with weights in the file "
        f"but not in the model: {sorted(set(file_names) - set(model_names))}; in the model "
        f"but not in the file: {sorted(set(model_names) - set(file_names))}",
        "pass the weights saved from this very model (weights of another model?)")


def _assign(spec: LayerSpec, layer, stored: StoredLayer, keras_major: int) -> None:
    if spec.class_name == "Sequential":
        for sub_spec, sub_stored in _split_nested(spec, stored):
            _assign(sub_spec, layer.get_layer(sub_spec.name), sub_stored, keras_major)
        return
    expected = [tuple(int(d) for d in w.shape) for w in layer.weights]
    arrays = to_model_layout(spec, expected, list(stored.arrays), keras_major)
    got = [tuple(a.shape) for a in arrays]
    if got != expected:
        raise ModelInputError(
            f"layer '{spec.name}' ({spec.class_name}): the model expects weights of shapes "
            f"{expected}, the file stores {got} ({', '.join(stored.weight_names)})",
            "the weights were saved from a different model or configuration")
    layer.set_weights(arrays)


def _split_nested(spec: LayerSpec, stored: StoredLayer):
    """A nested Sequential's weights, grouped by the sublayer each weight name starts with."""
    names_longest_first = sorted((s.name for s in spec.sublayers), key=len, reverse=True)
    groups = {name: StoredLayer(name, [], []) for name in names_longest_first}
    for weight_name, array in zip(stored.weight_names, stored.arrays):
        owner = next((n for n in names_longest_first
                      if weight_name.startswith((n + "/", n + "_"))), None)
        if owner is None:
            raise ModelInputError(f"nested model '{spec.name}': weight '{weight_name}' belongs "
                                  "to none of its layers")
        groups[owner].weight_names.append(weight_name)
        groups[owner].arrays.append(array)
    return [(sub, groups[sub.name]) for sub in spec.sublayers if groups[sub.name].arrays]


def to_model_layout(spec: LayerSpec, expected: list[tuple], arrays: list[np.ndarray],
                    keras_major: int) -> list[np.ndarray]:
    """Stored arrays -> the model's layout; values untouched."""
    if spec.class_name == "Bidirectional":
        half, expected_half = len(arrays) // 2, len(expected) // 2
        return (to_model_layout(spec.inner, expected[:expected_half], arrays[:half], keras_major)
                + to_model_layout(spec.inner, expected[expected_half:], arrays[half:], keras_major))
    if spec.class_name == "TimeDistributed":
        return to_model_layout(spec.inner, expected, arrays, keras_major)
    if keras_major == 1:
        arrays = _keras1_layout(spec, arrays)
    if spec.class_name in ("LSTM", "GRU") and len(arrays) == 3:
        arrays = from_cudnn(spec.class_name, arrays)
    if spec.class_name in CONV_CLASSES and expected and arrays and arrays[0].ndim == 4 \
            and arrays[0].shape != expected[0] \
            and np.transpose(arrays[0], (3, 2, 0, 1)).shape == expected[0]:
        arrays[0] = np.transpose(arrays[0], (3, 2, 0, 1))   # Keras 2's fallback for conv kernels
    return arrays


def from_cudnn(class_name: str, arrays: list[np.ndarray]) -> list[np.ndarray]:
    """CuDNNLSTM/CuDNNGRU weights (told by the bias: 8 or 6 units' worth) -> LSTM / GRU(reset_after=True)
    ones, as Keras 2.3.1's `_convert_rnn_weights` converts them: each gate's input kernel transposed and
    read back in Fortran order, each gate's recurrent kernel transposed; LSTM: the input and recurrent
    biases summed; GRU: the bias as (2, 3 units). Other weights are returned as they are."""
    kernel, recurrent, bias = arrays
    units = recurrent.shape[0]
    gates = 4 if class_name == "LSTM" else 3
    if bias.shape != (2 * gates * units,):
        return arrays
    kernel = np.hstack([k.T.reshape(k.shape, order="F") for k in np.hsplit(kernel, gates)])
    recurrent = np.hstack([k.T for k in np.hsplit(recurrent, gates)])
    bias = np.sum(np.split(bias, 2), axis=0) if gates == 4 else bias.reshape(2, -1)
    return [kernel, recurrent, bias]


def _keras1_layout(spec: LayerSpec, arrays: list[np.ndarray]) -> list[np.ndarray]:
    kind, channels_first = spec.class_name, spec.config.get("data_format") == "channels_first"
    if kind == "Conv1D" and arrays[0].ndim == 4:
        kernel = arrays[0]
        if kernel.shape[1] != 1 and kernel.shape[3] == 1:     # Keras 1.1: (out, in, k, 1)
            kernel = np.transpose(kernel, (2, 3, 1, 0))
        arrays[0] = kernel[:, 0, :, :]
    if kind == "Conv2D" and channels_first and arrays[0].ndim == 4:
        arrays[0] = np.transpose(arrays[0], (2, 3, 1, 0))
    if kind == "Conv2DTranspose" and arrays[0].ndim == 4:
        arrays[0] = np.transpose(arrays[0], (2, 3, 0, 1) if channels_first else (0, 1, 3, 2))
    if kind == "SeparableConv2D" and channels_first and arrays[0].ndim == 4:
        # (multiplier, in, rows, cols) and (out, in * multiplier, 1, 1), as Keras 1's TF backend read them
        arrays[:2] = [np.transpose(kernel, (2, 3, 1, 0)) for kernel in arrays[:2]]
    if kind == "Conv3D" and channels_first and arrays[0].ndim == 5:
        arrays[0] = np.transpose(arrays[0], (2, 3, 4, 1, 0))
    if kind == "LSTM" and len(arrays) == 12:    # stored i, c, f, o -> i, f, c, o
        arrays = [np.concatenate([arrays[k], arrays[k + 6], arrays[k + 3], arrays[k + 9]], axis=-1)
                  for k in range(3)]
    if kind == "ConvLSTM2D" and len(arrays) == 12:  # stored i, c, f, o (as LSTM) -> i, f, c, o
        arrays = [np.concatenate([arrays[k], arrays[k + 6], arrays[k + 3], arrays[k + 9]], axis=-1 if k == 2 or
                                 not channels_first else 0) for k in range(3)]
        if channels_first:  # (filters, in, rows, cols) -> (rows, cols, in, filters)
            arrays[:2] = [np.transpose(kernel, (2, 3, 1, 0)) for kernel in arrays[:2]]
    if kind == "GRU" and len(arrays) == 9:      # stored z, r, h
        arrays = [np.concatenate([arrays[k], arrays[k + 3], arrays[k + 6]], axis=-1)
                  for k in range(3)]
    return arrays
