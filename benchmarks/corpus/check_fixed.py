"""Does a model that `kdiff fix` wrote reproduce Theano's predictions? Run in the Keras 3 environment of the
backend that wrote it (KERAS_BACKEND set), as a user of the fixed model would load it:

    KERAS_BACKEND=jax $(kdiff env path jax) benchmarks/corpus/check_fixed.py FIXED/model.keras \\
        CORPUS/NAME/sample.npy CORPUS/NAME/theano_prediction.npy [--custom-objects FILE.py]

Prints one JSON line: the largest absolute difference of the predictions, that relative to the largest
|Theano prediction|, and the Keras and backend versions."""
from __future__ import annotations

import argparse
import json
import os
import runpy
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("sample")
    parser.add_argument("expected")
    parser.add_argument("--custom-objects")
    args = parser.parse_args()
    import numpy as np
    import keras

    import backends.modern_keras.extra_layers  # noqa: F401  (kdiff's own layers: kdiff>Highway, ...)

    custom = {}
    if args.custom_objects:
        custom = {k: v for k, v in runpy.run_path(args.custom_objects).items() if not k.startswith("_")}
    model = keras.saving.load_model(args.model, custom_objects=custom)
    sample, expected = np.load(args.sample), np.load(args.expected)
    predicted = model.predict(sample, verbose=0)
    predicted = predicted[0] if isinstance(predicted, list) else predicted
    predicted = np.asarray(predicted, dtype=np.float64)
    if predicted.shape != expected.shape:
        print(json.dumps({"error": f"prediction of shape {list(predicted.shape)}, Theano's {list(expected.shape)}"}))
        return
    difference = float(np.abs(predicted - expected).max())
    scale = max(float(np.abs(expected).max()), 1e-30)
    print(json.dumps({"max_abs": difference, "max_rel_to_scale": difference / scale,
                      "keras": keras.__version__, "backend": keras.backend.backend()}))


if __name__ == "__main__":
    main()
