"""What kdiff's Theano loading costs: run in the Keras 2.3.1 Theano environment, prints one JSON line.

    <theano venv>/bin/python tests/theano_checks/check_loading_cost.py FIXTURE_DIR

- ``symbolic_initial_values``: how many weights Keras built from a symbolic initializer draw (each one a
  Theano function compiled and run) while the model was loaded with its weights (kdiff: none), and without
  its weights (Keras's own initial values: every weight);
- ``zero_weights_without_file``: weights that are all zeros when no weights file follows (only biases);
- ``reproduces``: max |forward_all - activations.npz| relative to each layer's scale;
- ``forward_compiles``: Theano functions compiled by three forward_all calls (kdiff: one);
- ``after_set_weights_changes``: a later set_weights reaches the kept compiled forward function.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile

import numpy as np

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO_ROOT)

from backends.original_keras import compat  # noqa: E402


def main() -> None:
    folder = sys.argv[1]
    compat.configure_theano(os.path.join(tempfile.gettempdir(), "kdiff-theano-cache"))
    compat.prepare_keras(2)
    import theano
    from keras import backend as theano_backend  # the names Keras and kdiff call (keras.backend.*)

    from backends.original_keras.loading import forward_all, load_model

    symbolic = []
    original_variable = theano_backend.variable

    def counting_variable(value, *args, **kwargs):
        if isinstance(value, (theano.tensor.TensorVariable, theano.tensor.TensorConstant)):
            symbolic.append(1)
        return original_variable(value, *args, **kwargs)

    theano_backend.variable = counting_variable
    text = open(os.path.join(folder, "model.json")).read()
    counts = {}
    load_model(text, None, {}, False)
    counts["without_weights"] = len(symbolic)
    del symbolic[:]
    unloaded = load_model(text, None, {}, False)
    zero_weights = sum(1 for w in unloaded.get_weights() if w.ndim > 1 and not w.any())
    del symbolic[:]
    model = load_model(text, os.path.join(folder, "weights.h5"), {}, False)
    counts["with_weights"] = len(symbolic)
    theano_backend.variable = original_variable

    compiled = []
    original_function = theano_backend.function

    def counting_function(*args, **kwargs):
        compiled.append(1)
        return original_function(*args, **kwargs)

    theano_backend.function = counting_function
    sample = np.load(os.path.join(folder, "sample.npy"))
    recorded = np.load(os.path.join(folder, "activations.npz"))
    outputs = [forward_all(model, [sample]) for _ in range(3)]
    errors = [float(np.abs(values[0] - recorded[name]).max() / max(np.abs(recorded[name]).max(), 1e-30))
              for name, values in outputs[-1]]
    layer = next(l for l in model.layers if l.get_weights())
    weights = layer.get_weights()
    layer.set_weights([w * 2 for w in weights])
    changed = forward_all(model, [sample])
    theano_backend.function = original_function
    print(json.dumps({"symbolic_initial_values": counts, "zero_weights_without_file": zero_weights,
                      "reproduces": max(errors), "forward_compiles": len(compiled),
                      "after_set_weights_changes": bool(np.abs(changed[-1][1][0] - outputs[-1][-1][1][0]).max() > 0)}))


if __name__ == "__main__":
    main()
