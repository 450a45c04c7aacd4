"""A numpy-only worker for protocol and UI tests (never for tests that prove a feature).

Its "model" is a fixed three-layer chain, dense -> relu -> dense, seeded from the model
file's bytes. Options make it misbehave in one chosen way:
  fault=perturb:LAYER   add 1e-2 to that layer's output (and so to everything after it)
  fault=exit:forward    exit the process in the middle of a forward call
  fault=hang:forward    stop answering (and stop heartbeats) in a forward call
  fault=slow:load       take 'seconds' seconds to load
And one makes it longer or slower, for streaming tests:
  relus=N               N more relu layers after relu_1 (relu_2 ... relu_{N+1})
  pace=SECONDS          wait that long before computing each layer
"""
from __future__ import annotations

import os
import signal
import time
import zlib
from pathlib import Path

import numpy as np

from backends.common.worker_base import Worker as WorkerBase

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

    def _layers(self) -> list[str]:
        relus = [f"relu_{i}" for i in range(1, int(self.options.get("relus", "0")) + 2)]
        return ["dense_1", *relus, "dense_2"]

    def _describe_layers_impl(self) -> list[dict]:
        names = self._layers()
        return [{"name": n, "class_name": "Activation" if n.startswith("relu") else "Dense",
                 "inbound": ["input:x"] if i == 0 else [names[i - 1]],
                 "output_shapes": [(None, 3) if n == "dense_2" else (None, 8)]} for i, n in enumerate(names)]

    def _input_specs_impl(self) -> list[dict]:
        return [{"name": "x", "shape": [None, 4], "dtype": "float32"}]

    def _forward_impl(self, inputs):
        if self.fault == "exit:forward":
            os.kill(os.getpid(), signal.SIGKILL)
        if self.fault == "hang:forward":
            os.kill(os.getpid(), signal.SIGSTOP)
        pace = float(self.options.get("pace", "0"))
        x = inputs[0]
        for name in self._layers():
            time.sleep(pace)
            if name == "dense_1":
                x = x @ self._model["w1"]
            elif name == "dense_2":
                x = x @ self._model["w2"]
            else:
                x = np.maximum(x, 0)
            x = self._maybe_perturb(name, x)
            yield name, [x]

    def _maybe_perturb(self, layer: str, value: np.ndarray) -> np.ndarray:
        return value + np.float32(1e-2) if self.fault == f"perturb:{layer}" else value
