"""A numpy-only worker for protocol and UI tests (never for tests that prove a feature).

Its "model" is a fixed three-layer chain, dense -> relu -> dense, seeded from the model
file's bytes. Options make it misbehave in one chosen way:
  fault=perturb:LAYER   add 1e-2 to that layer's output (and so to everything after it)
  fault=exit:forward    exit the process in the middle of a forward call
  fault=hang:forward    stop answering (and stop heartbeats) in a forward call
  fault=slow:load       take 'seconds' seconds to load
"""
from __future__ import annotations

import os
import signal
import time
import zlib
from pathlib import Path

import numpy as np

from backends.worker_base import Worker as WorkerBase

LAYERS = ("dense_1", "relu_1", "dense_2")


class Worker(WorkerBase):
    backend = "fake"

    def _import_framework_impl(self) -> None:
        self.fault = self.options.get("fault", "")

    def _versions_impl(self) -> dict:
        return {"numpy": np.__version__}

    def _load_impl(self, model, weights, custom_objects, trust_lambda_bytecode):
        if self.fault == "slow:load":
            time.sleep(float(self.options.get("seconds", "30")))
        rng = np.random.default_rng(zlib.crc32(Path(model).read_bytes()))
        return {"w1": rng.standard_normal((4, 8)).astype(np.float32),
                "w2": rng.standard_normal((8, 3)).astype(np.float32)}

    def _describe_layers_impl(self) -> list[dict]:
        inbound = {"dense_1": ["input:x"], "relu_1": ["dense_1"], "dense_2": ["relu_1"]}
        shapes = {"dense_1": (None, 8), "relu_1": (None, 8), "dense_2": (None, 3)}
        return [{"name": n, "class_name": {"relu_1": "Activation"}.get(n, "Dense"), "inbound": inbound[n],
                 "output_shapes": [shapes[n]]} for n in LAYERS]

    def _input_specs_impl(self) -> list[dict]:
        return [{"name": "x", "shape": [None, 4], "dtype": "float32"}]

    def _forward_impl(self, inputs):
        if self.fault == "exit:forward":
            os.kill(os.getpid(), signal.SIGKILL)
        if self.fault == "hang:forward":
            os.kill(os.getpid(), signal.SIGSTOP)
        x = inputs[0]
        h = x @ self._model["w1"]
        h = self._maybe_perturb("dense_1", h)
        yield "dense_1", [h]
        r = self._maybe_perturb("relu_1", np.maximum(h, 0))
        yield "relu_1", [r]
        yield "dense_2", [self._maybe_perturb("dense_2", r @ self._model["w2"])]

    def _maybe_perturb(self, layer: str, value: np.ndarray) -> np.ndarray:
        return value + np.float32(1e-2) if self.fault == f"perturb:{layer}" else value
