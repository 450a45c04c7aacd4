"""Check that kdiff's Theano loading reproduces a fixture's recorded activations.

Run with the Python of the matching Theano environment (Keras 1 or 2, as model.json says):

    <theano venv>/bin/python tests/theano_checks/check_fixture_reproduction.py FIXTURE_DIR [--trust-lambda-bytecode]

Loads FIXTURE_DIR/model.json and weights.h5 through backends.original_keras.loading, runs
sample.npy through forward_all and compares every layer with activations.npz. Prints
{"layer key": max relative error} as JSON, where the error is max|ours - recorded| divided
by max|recorded| of that output. Exit status: 0 all within 1e-5, 1 above it or outputs
missing or of another shape, 2 the fixture could not be loaded (ModelInputError).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

import numpy as np

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO_ROOT)

from backends.common.errors import ModelInputError  # noqa: E402
from backends.original_keras import compat  # noqa: E402

TOLERANCE = 1e-5


def relative_errors(ours: list[tuple[str, list]], recorded) -> dict:
    """{key: max relative error, or a string saying what is wrong} for every recorded and produced output."""
    produced = {name if i == 0 else f"{name}:{i}": value
                for name, values in ours for i, value in enumerate(values)}
    errors = {}
    for key in dict.fromkeys([*recorded.files, *produced]):
        if key not in produced or key not in recorded.files:
            errors[key] = "missing from ours" if key not in produced else "not in activations.npz"
        elif produced[key].shape != recorded[key].shape:
            errors[key] = f"shape {produced[key].shape}, recorded {recorded[key].shape}"
        else:
            expected = recorded[key].astype(np.float64)
            scale = max(float(np.abs(expected).max()), np.finfo(np.float32).tiny)
            errors[key] = float(np.abs(produced[key].astype(np.float64) - expected).max() / scale)
    return errors


def main() -> int:
    parser = argparse.ArgumentParser(description="compare kdiff's Theano forward pass with a fixture")
    parser.add_argument("fixture_dir")
    parser.add_argument("--trust-lambda-bytecode", action="store_true")
    parser.add_argument("--theano-cache", default=os.path.join(tempfile.gettempdir(), "kdiff-theano-cache"))
    args = parser.parse_args()

    with open(os.path.join(args.fixture_dir, "model.json")) as f:
        model_json = f.read()
    from backends.original_keras.loading import keras_major_of

    compat.configure_theano(args.theano_cache)
    compat.prepare_keras(keras_major_of(model_json))
    from backends.original_keras.loading import forward_all, load_model

    try:
        model = load_model(model_json, os.path.join(args.fixture_dir, "weights.h5"), {}, args.trust_lambda_bytecode)
    except ModelInputError as exc:
        print(f"cannot load {args.fixture_dir}: {exc.message}" + (f" ({exc.hint})" if exc.hint else ""),
              file=sys.stderr)
        return 2
    sample = np.load(os.path.join(args.fixture_dir, "sample.npy"))
    with np.load(os.path.join(args.fixture_dir, "activations.npz")) as recorded:
        errors = relative_errors(forward_all(model, [sample]), recorded)
    print(json.dumps(errors, indent=1))
    failed = [key for key, error in errors.items() if isinstance(error, str) or error > TOLERANCE]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
