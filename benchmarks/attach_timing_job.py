"""The training job the attach benchmark measures: an MLP trained with train_on_batch.

Run in a kdiff Keras 3 environment: ``python attach_timing_job.py --width W --endpoint E MODE``.
MODE ``overhead``: ROUNDS rounds of three phases of STEPS steps each -- no probe call, probe idle,
probe with snapshots asked for by the benchmark -- printing a JSON line as each phase starts and
one with its mean step time as it ends; then the cost of one idle ``probe.step`` alone. MODE ``serve``: train with the probe until killed (for snapshot timings).
Prints ``ready ENDPOINT PARAMS`` first."""
import argparse
import json
import os
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
import keras  # noqa: E402
import numpy as np  # noqa: E402

import kdiff.probe  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("mode", choices=("overhead", "serve"))
parser.add_argument("--width", type=int, default=512)
parser.add_argument("--endpoint", default="tcp://127.0.0.1:*")
parser.add_argument("--steps", type=int, default=300)
parser.add_argument("--rounds", type=int, default=3)
args = parser.parse_args()

keras.utils.set_random_seed(0)
model = keras.Sequential([keras.Input((256,)), *[keras.layers.Dense(args.width, activation="relu") for _ in range(3)],
                          keras.layers.Dense(10, activation="softmax")])
model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
rng = np.random.default_rng(0)
batches = [(rng.standard_normal((64, 256)).astype("float32"), rng.integers(0, 10, 64)) for _ in range(50)]
probe = kdiff.probe.Probe(model, args.endpoint)
print("ready", probe.endpoint, model.count_params(), flush=True)
for batch in batches[:20]:  # warm-up: tracing is not what is measured
    model.train_on_batch(*batch)


def phase(use_probe: bool) -> float:
    started = time.perf_counter()
    for step in range(args.steps):
        batch = batches[step % len(batches)]
        if use_probe:
            probe.step(batch)
        model.train_on_batch(*batch)
    return (time.perf_counter() - started) / args.steps


if args.mode == "overhead":
    order = [("plain", False), ("idle", True), ("snapshots", True)]
    for round_number in range(args.rounds):  # each round in another order, so drift cancels out
        for name, use_probe in order[round_number % 3:] + order[:round_number % 3]:
            print(json.dumps({"start": name, "first_step": probe.next_step}), flush=True)
            print(json.dumps({"phase": name, "step_s": phase(use_probe)}), flush=True)
    idle_batch = batches[0]
    started = time.perf_counter()
    for _ in range(10000):
        probe.step(idle_batch)
    print(json.dumps({"idle_probe_step_s": (time.perf_counter() - started) / 10000}), flush=True)
else:
    while True:
        phase(True)
