"""Load a Theano-era fixture with the modern Keras side and compare every layer to Theano.

Run with a modern venv's python (KERAS_BACKEND picks Keras 3's backend):

    KERAS_BACKEND=jax python tests/modern_keras_checks/check_legacy_load.py tests/fixtures/k2_lstm
    python tests/modern_keras_checks/check_legacy_load.py FIXTURE --keras tf_keras --flip-kernels

Prints JSON: for each layer, max |modern - theano| / max |theano| (relative to the
reference's scale) and max |modern - theano|, in layer order. `--flip-kernels` reverses the
spatial axes of every convolution kernel after loading: what Keras 2 did when it moved a
file between Theano and TensorFlow. kdiff itself never does that; this flag proves that the
remaining differences are the kernel flip.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from backends.modern_keras import loading  # noqa: E402

CONV_CLASSES = ("Conv1D", "Conv2D", "Conv3D")


def flip_conv_kernels(model) -> list[str]:
    """Reverse every convolution kernel's spatial axes in place; returns the layers flipped."""
    flipped = []
    for layer in _all_layers(model):
        if type(layer).__name__ in CONV_CLASSES:
            weights = layer.get_weights()
            kernel = weights[0]
            spatial = tuple(range(kernel.ndim - 2))
            weights[0] = np.flip(kernel, axis=spatial).copy()
            layer.set_weights(weights)
            flipped.append(layer.name)
    return flipped


def _all_layers(layer):
    yield layer
    for child in getattr(layer, "layers", []):
        yield from _all_layers(child)
    for attr in ("layer", "forward_layer", "backward_layer"):
        child = getattr(layer, attr, None)
        if child is not None and child is not layer:
            yield from _all_layers(child)


def compare(fixture_dir: str, keras_name: str, flip: bool, custom_objects: dict, trust: bool):
    keras = importlib.import_module(keras_name)
    model = loading.load_model(keras, os.path.join(fixture_dir, "model.json"),
                               os.path.join(fixture_dir, "weights.h5"), custom_objects, trust)
    flipped = flip_conv_kernels(model) if flip else []
    sample = np.load(os.path.join(fixture_dir, "sample.npy"))
    reference = np.load(os.path.join(fixture_dir, "activations.npz"))
    rows = []
    for name, outputs in loading.forward_all(model, [sample]):
        for index, output in enumerate(outputs):
            key = name if index == 0 else f"{name}:{index}"
            if key not in reference:
                rows.append({"layer": key, "missing_in_reference": True})
                continue
            ref = reference[key].astype(np.float64)
            if ref.shape != output.shape:
                rows.append({"layer": key, "shape": list(output.shape), "reference_shape": list(ref.shape)})
                continue
            diff = float(np.max(np.abs(output - ref))) if ref.size else 0.0
            scale = float(np.max(np.abs(ref))) if ref.size else 0.0
            rows.append({"layer": key, "max_rel": diff / max(scale, 1e-12), "max_abs": diff})
    backend = keras.backend.backend() if keras_name == "keras" else "tf_keras"
    return {"fixture": os.path.basename(os.path.normpath(fixture_dir)), "keras": keras_name,
            "backend": backend, "flipped": flipped, "stored": loading.stored_attrs(model),
            "graph_differences": graph_differences(model, fixture_dir), "layers": rows}


def graph_differences(model, fixture_dir: str) -> list[str]:
    """Where describe_layers disagrees with the Theano side's meta.json (names, inbound, shapes)."""
    meta_path = os.path.join(fixture_dir, "meta.json")
    if not os.path.exists(meta_path):
        return ["no meta.json"]
    with open(meta_path) as file:
        theirs = json.load(file)["layers"]
    ours = json.loads(json.dumps(loading.describe_layers(model)))   # tuples -> lists
    differences = []
    if [layer["name"] for layer in ours] != [layer["name"] for layer in theirs]:
        differences.append(f"layer order: {[l['name'] for l in ours]} vs {[l['name'] for l in theirs]}")
    by_name = {layer["name"]: layer for layer in theirs}
    for layer in ours:
        other = by_name.get(layer["name"])
        for key in ("inbound", "output_shapes"):
            if other is not None and layer[key] != other[key]:
                differences.append(f"{layer['name']} {key}: {layer[key]} vs {other[key]}")
    return differences


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("fixture_dir")
    parser.add_argument("--keras", default="keras", choices=("keras", "tf_keras"))
    parser.add_argument("--flip-kernels", action="store_true")
    parser.add_argument("--trust-lambda-bytecode", action="store_true")
    args = parser.parse_args()
    result = compare(args.fixture_dir, args.keras, args.flip_kernels, {}, args.trust_lambda_bytecode)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
