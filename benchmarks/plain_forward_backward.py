"""The plain framework, no kdiff: every layer's output and the gradients of a fixed projected loss
``sum(output * P)`` with respect to every layer output and every trainable weight, as numpy arrays.

Run inside a kdiff Keras 3 environment with KERAS_BACKEND set to tensorflow or torch:
``python plain_forward_backward.py MODEL.keras SAMPLE.npy REPEATS``; prints JSON."""
import json
import math
import os
import sys

import keras
import numpy as np

from timing import median_time  # benchmarks/timing.py, beside this script

model_path, sample_path, repeats = sys.argv[1], sys.argv[2], int(sys.argv[3])
backend = os.environ["KERAS_BACKEND"]
model = keras.saving.load_model(model_path)
x = np.load(sample_path)
capture = keras.Model(model.inputs, [layer.output for layer in model.layers[1:]])
output_shape = (x.shape[0], *model.outputs[0].shape[1:])
projection = (np.random.default_rng(20241124).standard_normal(output_shape)
              / math.sqrt(math.prod(output_shape))).astype(np.float32)
last = capture.outputs.index(next(t for t in capture.outputs if t is model.layers[-1].output))


if backend == "tensorflow":
    import tensorflow as tf

    tensor, p = tf.convert_to_tensor(x), tf.convert_to_tensor(projection)

    def forward_backward():
        with tf.GradientTape() as tape:
            tape.watch(tensor)  # so that layers before the first weight (e.g. a ZeroPadding2D) get gradients too
            outputs = capture(tensor, training=False)
            loss = tf.reduce_sum(outputs[last] * p)
        grads = tape.gradient(loss, outputs + model.trainable_weights)
        return [o.numpy() for o in outputs], [None if g is None else tf.convert_to_tensor(g).numpy() for g in grads]

elif backend == "torch":
    import torch

    p = torch.from_numpy(projection)
    tensor = torch.from_numpy(x).requires_grad_()  # so that layers before the first weight get gradients too
    weights = [w.value for w in model.trainable_weights]

    def forward_backward():
        for w in weights:
            w.grad = None
        with torch.enable_grad():
            outputs = capture(tensor, training=False)
            for o in outputs:
                o.retain_grad()
            loss = torch.sum(outputs[last] * p)
            loss.backward()
        return ([o.detach().cpu().numpy() for o in outputs],
                [None if t.grad is None else t.grad.cpu().numpy() for t in list(outputs) + weights])

else:
    raise SystemExit(f"unsupported KERAS_BACKEND {backend}")


def timed(fn):
    return median_time(fn, repeats)


outs, grads = forward_backward()
n = len(outs)
missing_outputs = sum(g is None for g in grads[:n])
missing_weights = sum(g is None for g in grads[n:])
forward_backward_s = timed(forward_backward)
forward_s = timed(lambda: [keras.ops.convert_to_numpy(o) for o in capture(x, training=False)])
print(json.dumps({
    "backend": backend, "keras": keras.__version__,
    "forward_backward_s": forward_backward_s, "all_layers_forward_s": forward_s,
    "layers": n, "trainable_weights": len(grads) - n,
    "output_grads_missing": missing_outputs, "weight_grads_missing": missing_weights,
    "output_bytes": sum(o.nbytes for o in outs),
    "grad_bytes": sum(g.nbytes for g in grads if g is not None),
}))
