"""A numpy-only worker for protocol, UI and repair-loop tests (never for tests that prove a feature
on a real framework).

Its "model" is seeded from the model file's bytes; by default a fixed three-layer chain,
dense -> relu -> dense. With model=conv it is
  conv_1 (Conv2D 3x3, 2 -> 4 channels, channels_first, valid) -> leaky_1 (LeakyReLU 0.3)
  -> flatten_1 (Flatten, Keras 2's on channels_first: channels moved last first) -> dense_1 (Dense 48 -> 3)
on an input (batch, 2, 6, 5), computed with the numpy reference layers of tests/synthetic_layers.py.
Every layer can be run alone and changed (weights, set_weights, run_layer, layer_config,
run_layer_changed, change_layer), as the diagnosis asks of a real worker.

Options make it misbehave in one chosen way, or several separated by commas:
  fault=perturb:LAYER   add 1e-2 to that layer's output (and so to everything after it), also run alone
  fault=noise:LAYER     add fresh noise to that layer's output on every forward pass (it disagrees with itself)
  fault=exit:forward    exit the process in the middle of a forward call
  fault=hang:forward    stop answering (and stop heartbeats) in a forward call
  fault=slow:load       take 'seconds' seconds to load
and, with model=conv, hold one layer as a faulty port would:
  fault=flip:conv_1     the conv kernel flipped along its spatial axes (a Theano kernel loaded as stored)
  fault=slope:leaky_1   LeakyReLU's negative_slope 0.2 (Keras 3's leaky_relu default) instead of 0.3
  fault=flatten:dense_1 the Dense kernel's rows in channels-first (C, H, W) order, not Flatten's (H, W, C)
And one makes it longer or slower, for streaming tests:
  relus=N               N more relu layers after relu_1 (relu_2 ... relu_{N+1})
  pace=SECONDS          wait that long before computing each layer
"""
from __future__ import annotations

import os
import signal
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from backends.common.errors import ModelInputError
from backends.common.worker_base import Worker as WorkerBase
from tests import synthetic_layers

PERTURBATION = np.float32(1e-2)


@dataclass
class FakeLayer:
    name: str
    class_name: str
    inbound: list
    output_shape: tuple           # without the batch axis
    weights: list = field(default_factory=list)   # [(weight name, array)], in the layer's order
    config: dict = field(default_factory=dict)
    training: bool | None = None  # how the model calls it (None: at inference)


def compute(layer: FakeLayer, inputs: list, weights: list, config: dict, training: bool | None) -> np.ndarray:
    """The layer's output on ``inputs`` with these weights and settings."""
    (x,) = inputs
    if layer.class_name == "Activation":
        return np.maximum(x, 0)
    if layer.class_name == "Flatten":
        return synthetic_layers.flatten(x, config.get("order", "row_major"))
    if layer.class_name == "Dense" and not config.get("use_bias", True):
        return x @ weights[0]  # (the default chain's layers, exactly as they always computed)
    return synthetic_layers.forward(layer.class_name, config, weights, [x], training)[0]


class Worker(WorkerBase):
    backend = "fake"

    def _import_framework_impl(self) -> None:
        self.fault = self.options.get("fault", "")
        self.faults = set(self.fault.split(",")) if self.fault else set()
        self._noise = np.random.default_rng()

    def _versions_impl(self) -> dict:
        return {"numpy": np.__version__}

    def _load_impl(self, model, weights, custom_objects, trust_lambda_bytecode):
        if "slow:load" in self.faults:
            time.sleep(float(self.options.get("seconds", "30")))
        rng = np.random.default_rng(zlib.crc32(Path(model).read_bytes()))
        layers = self._conv_model(rng) if self.options.get("model") == "conv" else self._chain(rng)
        return {layer.name: layer for layer in layers}

    def _chain(self, rng) -> list[FakeLayer]:
        w1 = rng.standard_normal((4, 8)).astype(np.float32)
        w2 = rng.standard_normal((8, 3)).astype(np.float32)
        relus = [f"relu_{i}" for i in range(1, int(self.options.get("relus", "0")) + 2)]
        names = ["dense_1", *relus, "dense_2"]
        layers = []
        for i, name in enumerate(names):
            inbound = ["input:x"] if i == 0 else [names[i - 1]]
            if name == "dense_1":
                layers.append(FakeLayer(name, "Dense", inbound, (8,), [("dense_1/kernel", w1)],
                                        {"name": name, "units": 8, "use_bias": False, "activation": "linear"}))
            elif name == "dense_2":
                layers.append(FakeLayer(name, "Dense", inbound, (3,), [("dense_2/kernel", w2)],
                                        {"name": name, "units": 3, "use_bias": False, "activation": "linear"}))
            else:
                layers.append(FakeLayer(name, "Activation", inbound, (8,), [], {"name": name, "activation": "relu"}))
        return layers

    def _conv_model(self, rng) -> list[FakeLayer]:
        kernel = (rng.standard_normal((3, 3, 2, 4)) * 0.5).astype(np.float32)
        conv_bias = (rng.standard_normal(4) * 0.1).astype(np.float32)
        dense_kernel = (rng.standard_normal((48, 3)) * 0.3).astype(np.float32)
        dense_bias = (rng.standard_normal(3) * 0.1).astype(np.float32)
        slope = 0.3
        if "flip:conv_1" in self.faults:
            kernel = np.ascontiguousarray(kernel[::-1, ::-1])
        if "slope:leaky_1" in self.faults:
            slope = 0.2
        if "flatten:dense_1" in self.faults:  # rows (H, W, C) = (4, 3, 4) laid out as (C, H, W)
            dense_kernel = np.ascontiguousarray(dense_kernel.reshape(4, 3, 4, 3).transpose(2, 0, 1, 3).reshape(48, 3))
        dtype = {"dtype": "float32"}
        return [
            FakeLayer("conv_1", "Conv2D", ["input:x"], (4, 4, 3), [("conv_1/kernel", kernel), ("conv_1/bias", conv_bias)],
                      {"name": "conv_1", "filters": 4, "kernel_size": [3, 3], "strides": [1, 1], "padding": "valid",
                       "data_format": "channels_first", "activation": "linear", "use_bias": True, **dtype}),
            FakeLayer("leaky_1", "LeakyReLU", ["conv_1"], (4, 4, 3), [],
                      {"name": "leaky_1", "negative_slope": slope, **dtype}),
            FakeLayer("flatten_1", "Flatten", ["leaky_1"], (48,), [],
                      {"name": "flatten_1", "data_format": "channels_first", "order": "channels_last", **dtype}),
            FakeLayer("dense_1", "Dense", ["flatten_1"], (3,), [("dense_1/kernel", dense_kernel),
                                                                ("dense_1/bias", dense_bias)],
                      {"name": "dense_1", "units": 3, "activation": "linear", "use_bias": True, **dtype}),
        ]

    def _describe_layers_impl(self) -> list[dict]:
        return [{"name": layer.name, "class_name": layer.class_name, "inbound": list(layer.inbound),
                 "output_shapes": [(None, *layer.output_shape)], "dtype": "float32",
                 "weight_shapes": [list(w.shape) for _, w in layer.weights]} for layer in self._model.values()]

    def _input_specs_impl(self) -> list[dict]:
        shape = [None, 2, 6, 5] if self.options.get("model") == "conv" else [None, 4]
        return [{"name": "x", "shape": shape, "dtype": "float32"}]

    def _forward_impl(self, inputs):
        if "exit:forward" in self.faults:
            os.kill(os.getpid(), signal.SIGKILL)
        if "hang:forward" in self.faults:
            os.kill(os.getpid(), signal.SIGSTOP)
        pace = float(self.options.get("pace", "0"))
        x = inputs[0]
        for layer in self._model.values():
            time.sleep(pace)
            x = self._run(layer, [x], [w for _, w in layer.weights], layer.config, layer.training)
            if f"noise:{layer.name}" in self.faults:
                x = x + self._noise.standard_normal(x.shape).astype(x.dtype) * np.float32(1e-3)
            yield layer.name, [x]

    def _run(self, layer: FakeLayer, inputs, weights, config, training) -> np.ndarray:
        y = compute(layer, inputs, weights, config, training)
        return y + PERTURBATION if f"perturb:{layer.name}" in self.faults else y

    # ---- one layer at a time (what the diagnosis asks) -----------------------------------
    def _layer_weights_impl(self, layer: str):
        return list(self._model[layer].weights)

    def _set_layer_weights_impl(self, layer: str, arrays) -> None:
        held = self._model[layer]
        held.weights = [(name, np.array(array)) for (name, _), array in zip(held.weights, arrays)]

    def _run_layer_impl(self, layer: str, inputs):
        held = self._model[layer]
        return [self._run(held, inputs, [w for _, w in held.weights], held.config, held.training)]

    def _layer_config_impl(self, layer: str) -> dict:
        return dict(self._model[layer].config)

    def _run_layer_changed_impl(self, layer, inputs, overrides, training, weights):
        held = self._model[layer]
        self._check_change(held, overrides)
        arrays = [w for _, w in held.weights] if weights is None else weights
        return [self._run(held, inputs, arrays, {**held.config, **overrides},
                          held.training if training is None else training)]

    def _save_impl(self, directory: str) -> list:
        """Every layer's weights as they are now, in one .npz (the stand-in has no model format of its own)."""
        path = Path(directory) / "weights.npz"
        np.savez(path, **{name: value for layer in self._model.values() for name, value in
                          [(n.replace("/", "__"), v) for n, v in layer.weights]})
        return [path]

    def _change_layer_impl(self, layer, overrides, training, weights):
        held = self._model[layer]
        self._check_change(held, overrides)
        held.config = {**held.config, **overrides}
        held.training = held.training if training is None else training
        if weights is not None:
            held.weights = [(name, np.array(array)) for (name, _), array in zip(held.weights, weights)]
        return self._model

    @staticmethod
    def _check_change(layer: FakeLayer, overrides: dict) -> None:
        unknown = sorted(set(overrides) - set(layer.config))
        if unknown:  # as a Keras layer's from_config refuses settings it does not have
            raise ModelInputError(f"layer '{layer.name}' has no setting {', '.join(unknown)}",
                                  "change only settings the layer's config holds")
