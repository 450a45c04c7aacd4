"""Exercise the modern Keras side's error paths and native formats on the fixtures.

    KERAS_BACKEND=jax python tests/modern_keras_checks/check_error_cases.py tests/fixtures [--keras tf_keras]

Prints JSON {case: {"passed": bool, "detail": ...}}; exits 1 if any case failed.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import sys
import tempfile

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from backends.common.errors import LambdaBytecodeError, ModelInputError, UnsupportedLayerError  # noqa: E402
from backends.modern_keras import loading  # noqa: E402


def expect_error(error_class, call, must_mention=()):
    try:
        call()
    except error_class as error:
        text = f"{error.message} | hint: {error.hint}"
        missing = [word for word in must_mention if word not in text]
        return {"passed": not missing, "detail": text, **({"missing": missing} if missing else {})}
    except Exception as error:  # noqa: BLE001 - reported as a failed case
        return {"passed": False, "detail": f"wrong error {type(error).__name__}: {error}"}
    return {"passed": False, "detail": "no error raised"}


def same_outputs(model_a, model_b, sample) -> dict:
    a, b = loading.forward_all(model_a, [sample]), loading.forward_all(model_b, [sample])
    worst = max(float(np.max(np.abs(x - y))) for (_, xs), (_, ys) in zip(a, b) for x, y in zip(xs, ys))
    return {"passed": [n for n, _ in a] == [n for n, _ in b] and worst == 0.0, "detail": f"max |diff| {worst}"}


def write_full_legacy_h5(json_path, weights_path, out_path):
    """What Keras 2's model.save() wrote: model_config attribute + model_weights group."""
    with h5py.File(weights_path, "r") as weights, h5py.File(out_path, "w") as out:
        out.attrs["model_config"] = open(json_path).read().encode("utf8")
        group = out.create_group("model_weights")
        for key, value in weights.attrs.items():
            group.attrs[key] = value
        for name in weights:
            weights.copy(weights[name], group, name)


def run_cases(keras, fixtures: str, tmp: str) -> dict:
    def path(fixture, name):
        return os.path.join(fixtures, fixture, name)

    def load(model_path, weights_path, custom_objects=None, trust=False):
        return loading.load_model(keras, model_path, weights_path, custom_objects or {}, trust)

    vgg_json, vgg_weights = path("k2_vgg_channels_first", "model.json"), path("k2_vgg_channels_first", "weights.h5")
    cases = {}
    not_hdf5 = os.path.join(tmp, "not_hdf5.h5")
    with open(not_hdf5, "w") as file:
        file.write("this is not HDF5")
    cases["weights_not_hdf5"] = expect_error(ModelInputError, lambda: load(vgg_json, not_hdf5), ["not HDF5"])
    truncated = os.path.join(tmp, "truncated.h5")
    with open(vgg_weights, "rb") as src, open(truncated, "wb") as dst:
        dst.write(src.read()[: os.path.getsize(vgg_weights) // 2])
    cases["weights_truncated"] = expect_error(ModelInputError, lambda: load(vgg_json, truncated))
    cases["weights_of_another_model"] = expect_error(
        ModelInputError, lambda: load(path("k2_imdb_cnn", "model.json"), vgg_weights), ["another model"])
    config = json.load(open(vgg_json))
    config["config"]["layers"][-1]["config"]["units"] = 7
    wrong_units = os.path.join(tmp, "wrong_units.json")
    json.dump(config, open(wrong_units, "w"))
    cases["weights_shape_mismatch"] = expect_error(
        ModelInputError, lambda: load(wrong_units, vgg_weights), ["dense_2", "(32, 7)", "(32, 10)"])
    config["config"]["layers"][-1]["class_name"] = "ConvLSTM2DCell"
    unsupported = os.path.join(tmp, "unsupported.json")
    json.dump(config, open(unsupported, "w"))
    cases["unsupported_layer"] = expect_error(
        UnsupportedLayerError, lambda: load(unsupported, vgg_weights), ["ConvLSTM2DCell", "dense_2"])

    lambda_json, lambda_weights = path("k2_lambda", "model.json"), path("k2_lambda", "weights.h5")
    cases["lambda_untrusted"] = expect_error(LambdaBytecodeError, lambda: load(lambda_json, lambda_weights),
                                             ["lambda_1"])
    sample = np.load(path("k2_lambda", "sample.npy"))
    reference = np.load(path("k2_lambda", "activations.npz"))
    by_layer = load(lambda_json, lambda_weights, {"lambda_1": lambda x: x * 2.0 + 1.0})
    outputs = dict(loading.forward_all(by_layer, [sample]))
    diff = float(np.max(np.abs(outputs["lambda_1"][0] - reference["lambda_1"])))
    cases["lambda_from_custom_objects"] = {"passed": diff < 1e-5, "detail": f"max |diff| {diff}"}

    full_h5 = os.path.join(tmp, "full_model.h5")
    write_full_legacy_h5(vgg_json, vgg_weights, full_h5)
    vgg_sample = np.load(path("k2_vgg_channels_first", "sample.npy"))
    from_json = load(vgg_json, vgg_weights)
    cases["legacy_full_model_h5"] = same_outputs(from_json, load(full_h5, None), vgg_sample)
    cases["legacy_full_model_h5_attrs"] = {"passed": loading.stored_attrs(load(full_h5, None)).get("backend") == "theano",
                                           "detail": loading.stored_attrs(load(full_h5, None))}
    cases["weights_file_as_model"] = expect_error(ModelInputError, lambda: load(vgg_weights, None), ["weights only"])
    cases["json_without_weights"] = expect_error(ModelInputError, lambda: load(vgg_json, None), ["weights"])

    native = os.path.join(tmp, "model.keras")
    from_json.save(native)
    cases["native_keras_file"] = same_outputs(from_json, load(native, None), vgg_sample)
    native_json, native_weights = os.path.join(tmp, "native.json"), os.path.join(tmp, "native.weights.h5")
    with open(native_json, "w") as file:
        file.write(from_json.to_json())
    from_json.save_weights(native_weights)
    cases["native_json_and_weights"] = same_outputs(from_json, load(native_json, native_weights), vgg_sample)
    if keras.__name__ == "keras":   # tf_keras JSON is Keras 2 JSON: legacy weights fit it
        cases["native_model_legacy_weights"] = expect_error(
            ModelInputError, lambda: load(native_json, vgg_weights), ["Keras 1/2 weights"])
    return cases


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("fixtures_dir")
    parser.add_argument("--keras", default="keras", choices=("keras", "tf_keras"))
    args = parser.parse_args()
    keras = importlib.import_module(args.keras)
    tmp = tempfile.mkdtemp(prefix="kdiff-modern-keras-")
    try:
        cases = run_cases(keras, args.fixtures_dir, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(cases, indent=1))
    sys.exit(0 if all(case["passed"] for case in cases.values()) else 1)


if __name__ == "__main__":
    main()
