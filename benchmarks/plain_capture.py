"""The plain framework, no kdiff: time predict and an all-layer capture of one model.

Run inside a kdiff Keras 3 environment with KERAS_BACKEND set:
``python plain_capture.py MODEL.keras SAMPLE.npy REPEATS``; prints JSON."""
import json
import sys

import keras
import numpy as np

from timing import median_time  # benchmarks/timing.py, beside this script

model_path, sample_path, repeats = sys.argv[1], sys.argv[2], int(sys.argv[3])
model = keras.saving.load_model(model_path)
x = np.load(sample_path)
capture = keras.Model(model.inputs, [layer.output for layer in model.layers[1:]])


def timed(fn):
    return median_time(fn, repeats)


predict = timed(lambda: np.asarray(model(x, training=False)))
all_layers = timed(lambda: [np.asarray(out) for out in capture(x, training=False)])
nbytes = sum(np.asarray(out).nbytes for out in capture(x, training=False))
print(json.dumps({"predict_s": predict, "all_layers_s": all_layers, "layers": len(capture.outputs),
                  "output_bytes": nbytes}))
