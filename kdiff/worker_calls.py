"""Calls to one side's worker, with arrays in and out as numpy (used by the diagnosis)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kdiff.errors import WorkerFailure
from kdiff.model_inputs import ModelInputs
from kdiff.protocol import vocabulary
from kdiff.workers import WorkerPool


def _ordered(arrays: dict) -> list[np.ndarray]:
    return [np.array(value) for value in vocabulary.unpack(arrays)]


@dataclass(frozen=True)
class SideClient:
    pool: WorkerPool
    side: str

    def weights(self, layer: str) -> list[tuple[str, np.ndarray]]:
        result, arrays = self.pool.call(self.side, "weights", {"layer": layer})
        return list(zip(result["names"], _ordered(arrays)))

    def set_weights(self, layer: str, arrays: list[np.ndarray]) -> None:
        self.pool.call(self.side, "set_weights", {"layer": layer}, vocabulary.pack(arrays))

    def run_layer(self, layer: str, inputs: list[np.ndarray]) -> list[np.ndarray]:
        _, arrays = self.pool.call(self.side, "run_layer", {"layer": layer}, vocabulary.pack(inputs))
        return _ordered(arrays)

    def outputs(self, layers: list[str]) -> dict[str, list[np.ndarray]]:
        result, arrays = self.pool.call(self.side, "outputs", {"layers": layers})
        return {layer: [np.array(value) for value in values]
                for layer, values in vocabulary.unpack_by_layer(result["counts"], arrays).items()}

    def output_gradients(self, layers: list[str]) -> dict[str, list[np.ndarray]]:
        """d loss / d output of the given layers, as the side's last backward pass left them."""
        result, arrays = self.pool.call(self.side, "outputs", {"layers": layers, "gradients": True})
        return {layer: [np.array(value) for value in values]
                for layer, values in vocabulary.unpack_by_layer(result["counts"], arrays).items()}

    def layer_backward(self, layer: str, inputs: list[np.ndarray], output_gradients: list[np.ndarray]
                       ) -> tuple[list[np.ndarray], list[tuple[str, np.ndarray]]]:
        """The layer's backward alone: (d loss / d each input, [(weight name, d loss / d weight)]) for
        loss = sum_k sum(output_k * output_gradients[k]) of the layer run on ``inputs``."""
        result, arrays = self.pool.call(self.side, "layer_backward", {"layer": layer},
                                        {**vocabulary.pack(inputs),
                                         **vocabulary.pack(output_gradients, vocabulary.OUTPUT_GRADIENTS)})
        weights = [np.array(value) for value in vocabulary.unpack(arrays, vocabulary.WEIGHT_GRADIENTS)]
        return ([np.array(value) for value in vocabulary.unpack(arrays, vocabulary.INPUT_GRADIENTS)],
                list(zip(result["weights"], weights)))

    def self_check(self, sample: "np.ndarray | list | ModelInputs") -> dict[str, float]:
        """Layers whose output differs between two identical forward passes: name -> max |difference|
        (``sample``: the model's input, or a list of them for a model with several, as side A takes it)."""
        result, _ = self.pool.call(self.side, "self_check", arrays=ModelInputs.of(sample).pack("a"))
        return result["differing"]

    def save(self, directory: str) -> list[str]:
        """Have the side write its model as it is now, repairs included; the files it wrote."""
        if not self.pool.workers[self.side].sends_files:
            result, _ = self.pool.call(self.side, "save", {"directory": directory})
            return result["files"]
        result, arrays = self.pool.call(self.side, "save", {"directory": directory, "send_files": True})
        received = vocabulary.unpack_files(arrays)
        folder = Path(directory)
        folder.mkdir(parents=True, exist_ok=True)
        written = []
        for name in result["files"]:  # the worker on another host wrote them: written here by their plain names
            if name not in received or Path(name).name != name or name in ("", ".", ".."):
                worker = self.pool.workers[self.side]
                raise WorkerFailure(self.side, worker.backend, "save", f"it sent no file {name!r} it said it wrote",
                                    f"see what 'kdiff worker' printed on the host of {worker.endpoint}")
            (folder / name).write_bytes(received[name])
            written.append(str(folder / name))
        return written

    def layer_config(self, layer: str) -> dict:
        result, _ = self.pool.call(self.side, "layer_config", {"layer": layer})
        return result["config"]

    def run_layer_changed(self, layer: str, inputs: list[np.ndarray], overrides: dict,
                          training: bool | None, weights: list[np.ndarray] | None = None) -> list[np.ndarray]:
        """A copy of the layer with its config overridden (and/or in training mode), run alone,
        holding `weights` when given (shaped for the changed config), else the layer's own."""
        args, arrays = _change(layer, overrides, training, weights)
        _, outputs = self.pool.call(self.side, "run_layer_changed", args,
                                    {**arrays, **vocabulary.pack(inputs)})
        return _ordered(outputs)

    def change_layer(self, layer: str, overrides: dict, training: bool | None,
                     weights: list[np.ndarray] | None = None) -> None:
        """Keep such a change in the side's model."""
        self.pool.call(self.side, "change_layer", *_change(layer, overrides, training, weights))


def _change(layer: str, overrides: dict, training: bool | None, weights) -> tuple[dict, dict]:
    """The arguments and arrays of a config change (weights travel as vocabulary.WEIGHTS)."""
    arrays = {} if weights is None else vocabulary.pack(weights, vocabulary.WEIGHTS)
    return {"layer": layer, "overrides": overrides, "training": training, "with_weights": weights is not None}, arrays
