"""A worker that replays a live run's snapshot: it answers the coordinator's calls with the
layer outputs, weights and gradients the probe captured, so the comparison, classification
and diagnosis code treats the live run as one more side. It runs no framework.

It answers only for the snapshot's own batch (and, for gradients, for the snapshot's own
loss gradients as the projections), so nothing it says can be mistaken for another input's."""
from __future__ import annotations

import json
import zipfile

import numpy as np

from backends.common.errors import ModelInputError
from backends.common.worker_base import Worker as WorkerBase
from kdiff.protocol.snapshot import read_snapshot


class Worker(WorkerBase):
    backend = "snapshot"

    def _import_framework_impl(self) -> None:
        self.snapshot = read_snapshot(self.options["snapshot"])
        self.index = {layer["name"]: i for i, layer in enumerate(self.snapshot.layers)}

    def _versions_impl(self) -> dict:
        return self.snapshot.header["versions"]

    def _device_impl(self) -> str:
        return self.snapshot.header["device"]

    def _load_impl(self, model, weights, custom_objects, trust_lambda_bytecode):
        self.configs = _layer_configs(model)
        return self.snapshot

    def _layer_config_impl(self, layer):
        """The layer's config as the model file states it (the diagnosis compares it with side B's)."""
        if layer not in self.configs:
            raise ModelInputError(f"the snapshot's model file holds no config for layer '{layer}'")
        return self.configs[layer]

    def _describe_layers_impl(self) -> list[dict]:
        return [{key: value for key, value in layer.items() if key != "weights"} for layer in self.snapshot.layers]

    def _input_specs_impl(self) -> list[dict]:
        return self.snapshot.header["inputs"]

    def _forward_impl(self, inputs):
        self._require_own_batch(inputs)
        for name, index in self.index.items():
            yield name, self.snapshot.outputs(index)

    def _layer_weights_impl(self, layer):
        return self.snapshot.weights(self.index[layer])

    def _backward_impl(self, inputs, projections, loss, targets):
        self._require_own_batch(inputs)
        if loss is not None or not _same(projections, self.snapshot.output_grads):
            raise ModelInputError("a snapshot holds the gradients of the run's own loss only",
                                  "send the snapshot's p arrays (d loss / d output) as the projections")
        for name, index in self.index.items():
            yield name, self.snapshot.layer_output_grads(index), self.snapshot.weight_grads(index)

    def _run_layer_impl(self, layer, inputs):
        raise ModelInputError("a snapshot of a live run cannot run a layer again",
                              "run layers on the reference side")

    def _require_own_batch(self, inputs) -> None:
        if not _same(inputs, self.snapshot.inputs):
            raise ModelInputError(f"the snapshot of step {self.snapshot.step} answers for its own batch only")


def _layer_configs(model_file: str) -> dict[str, dict]:
    """Layer name -> config, from a Keras 3 .keras file's config.json (read as JSON, nothing built)."""
    with zipfile.ZipFile(model_file) as archive:
        config = json.loads(archive.read("config.json"))
    found = {}

    def visit(node) -> None:
        if isinstance(node, dict):
            layer_config = node.get("config")
            if "class_name" in node and isinstance(layer_config, dict) and isinstance(layer_config.get("name"), str):
                found.setdefault(layer_config["name"], layer_config)
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    visit(config.get("config", {}))
    return found


def _same(arrays: list, expected: list) -> bool:
    return len(arrays) == len(expected) and all(np.shape(a) == e.shape and np.array_equal(a, e)
                                                for a, e in zip(arrays, expected))
