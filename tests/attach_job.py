"""A small, seeded, deterministic Keras 3 training job with kdiff's probe, for tests/test_attach.py.

Run in a kdiff Keras 3 environment (KERAS_BACKEND: tensorflow unless set): ``python tests/attach_job.py
OUT.npz [--endpoint E] [--keys DIR] [--fit] [--two-io] [--steps N] [--train-steps K] [--pace SECONDS]``.
Prints ``ready ENDPOINT`` once the probe listens, trains (a loop of its own calling ``probe.step``, or
``model.fit`` with ``KerasProbe``) on the first K of the N batches (default all), then writes every
weight and optimizer variable to OUT.npz and prints ``done``. Without --endpoint it runs no probe.
``--two-io``: a functional model with two inputs and two outputs (two losses, weighted). With
--train-steps K < N, Keras's own loss on batch K (the one step K trains on) goes to OUT.npz.loss."""
import argparse
import os
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ["TF_DETERMINISTIC_OPS"] = "1"
import keras  # noqa: E402
import numpy as np  # noqa: E402

import kdiff.probe  # noqa: E402

BATCH = 16

parser = argparse.ArgumentParser()
parser.add_argument("out")
parser.add_argument("--endpoint")
parser.add_argument("--keys")
parser.add_argument("--fit", action="store_true")
parser.add_argument("--steps", type=int, default=200)
parser.add_argument("--train-steps", type=int, help="train on the first K batches only")
parser.add_argument("--two-io", action="store_true")
parser.add_argument("--pace", type=float, default=0.01, help="seconds to sleep after each step")
args = parser.parse_args()

keras.utils.set_random_seed(0)
if keras.backend.backend() == "tensorflow":
    import tensorflow as tf

    tf.config.experimental.enable_op_determinism()
rng = np.random.default_rng(0)
x = rng.standard_normal((args.steps * BATCH, 8, 8, 1)).astype("float32")
y = rng.integers(0, 10, args.steps * BATCH)
if args.two_io:
    image, vector = keras.Input((8, 8, 1), name="image"), keras.Input((4,), name="vector")
    features = keras.layers.Flatten(name="flatten")(keras.layers.Conv2D(4, 3, activation="relu", name="conv")(image))
    features = keras.layers.Dropout(0.25, name="dropout")(features)
    joined = keras.layers.Concatenate(name="joined")([features, keras.layers.Dense(8, name="embed")(vector)])
    model = keras.Model([image, vector], [keras.layers.Dense(10, activation="softmax", name="label")(joined),
                                          keras.layers.Dense(1, name="value")(joined)], name="attach_job_two_io")
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=["sparse_categorical_crossentropy", "mse"],
                  loss_weights=[1.0, 0.5])
    v = rng.standard_normal((args.steps * BATCH, 4)).astype("float32")
    x, y = [x, v], [y, v.sum(axis=1, keepdims=True)]
else:
    model = keras.Sequential([
        keras.Input((8, 8, 1)),
        keras.layers.Conv2D(4, 3, activation="relu", name="conv"),
        keras.layers.Dropout(0.25, name="dropout"),   # draws random numbers in every training step
        keras.layers.Flatten(name="flatten"),
        keras.layers.Dense(10, activation="softmax", name="dense"),
    ], name="attach_job")
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy")
    x, y = [x], [y]
steps = args.train_steps if args.train_steps is not None else args.steps


def part(arrays, start, stop):
    parts = [a[start:stop] for a in arrays]
    return parts if args.two_io else parts[0]


keys = kdiff.probe.ServerKeys.load(args.keys) if args.keys else None


class Pace(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
        time.sleep(args.pace)


if args.fit:
    callbacks = [Pace()]
    if args.endpoint:
        probe = kdiff.probe.KerasProbe(args.endpoint, keys=keys)
        print("ready", probe.endpoint, flush=True)
        callbacks.append(probe)
    model.fit(part(x, 0, steps * BATCH), part(y, 0, steps * BATCH), batch_size=BATCH, epochs=1, shuffle=False,
              verbose=0, callbacks=callbacks)
else:
    probe = kdiff.probe.Probe(model, args.endpoint, keys=keys) if args.endpoint else None
    if probe:
        print("ready", probe.endpoint, flush=True)
    for step in range(steps):
        batch = (part(x, step * BATCH, (step + 1) * BATCH), part(y, step * BATCH, (step + 1) * BATCH))
        if probe:
            probe.step(batch)
        model.train_on_batch(*batch)
        time.sleep(args.pace)
    if probe:
        probe.close()
np.savez(args.out, *[np.asarray(v) for v in model.weights], *[np.asarray(v) for v in model.optimizer.variables])
if steps < args.steps:   # Keras's own loss on the batch of the next step, the one a snapshot there sees
    batch = (part(x, steps * BATCH, (steps + 1) * BATCH), part(y, steps * BATCH, (steps + 1) * BATCH))
    with open(args.out + ".loss", "w") as file:
        file.write(repr(float(model.evaluate(*batch, batch_size=BATCH, verbose=0, return_dict=True)["loss"])))
print("done", flush=True)
