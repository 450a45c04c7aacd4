"""The snapshot message a live run's probe sends, and the files a replay worker reads it from.

The message (backends.modern_keras.capture) is a header ``{"type": "snapshot", "step", "loss", "grad_norm",
"backend", "versions", "device", "model_hash", "layers": [{name, class_name, inbound, output_shapes,
weights}], "inputs", "outputs", "optimizer_slots", "capture_seconds"}`` with arrays: ``x{i}`` the
batch for model input ``i`` (in ``inputs`` order), ``y{k}`` the targets and ``p{k}`` d loss / d output
for model output ``k`` (in ``outputs`` order); for layer ``i`` (in ``layers`` order) ``o{i}.{k}`` its
outputs, ``g{i}.{k}`` d loss / d outputs, ``w{i}.{j}`` its weights, ``wg{i}.{j}`` d loss / d weights;
``s{k}`` the optimizer's slots; and ``model_file`` (the model saved as .keras, bytes as uint8) unless
the request said the coordinator holds the file of ``model_hash`` already.

The model file serves for its architecture only: its weights may be those of an earlier snapshot
of the same run (the coordinator keeps one file per architecture, in ``$KDIFF_HOME/attach-models``);
the snapshot's own weights are the ``w`` arrays, which the replay gives the reference."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kdiff.protocol.vocabulary import LABELS, MODEL_INPUTS, PROJECTIONS, SLOTS_AFTER, unpack
from kdiff.protocol.wire import ProtocolError

HEADER_FIELDS = {"step": int, "loss": (int, float, str), "backend": str, "layers": list, "inputs": list,
                 "outputs": list, "optimizer_slots": list, "versions": dict, "device": str,
                 "capture_seconds": (int, float), "model_hash": str}
LAYER_KEYS = {"name": str, "class_name": str, "inbound": list, "output_shapes": list, "weights": list}
HASH = re.compile(r"[0-9a-f]{1,64}")


@dataclass(frozen=True)
class Snapshot:
    header: dict
    arrays: dict

    @property
    def step(self) -> int:
        return self.header["step"]

    @property
    def loss(self) -> float:
        return self.header["loss"]

    @property
    def backend(self) -> str:
        return self.header["backend"]

    @property
    def layers(self) -> list[dict]:
        return self.header["layers"]

    @property
    def nbytes(self) -> int:
        return sum(array.nbytes for array in self.arrays.values())

    @property
    def inputs(self) -> list[np.ndarray]:
        """The batch, one array per model input."""
        return unpack(self.arrays, MODEL_INPUTS)[:len(self.header["inputs"])]

    @property
    def output_grads(self) -> list[np.ndarray]:
        """d loss / d model output, one array per model output."""
        return unpack(self.arrays, PROJECTIONS)[:len(self.header["outputs"])]

    def outputs(self, index: int) -> list[np.ndarray]:
        return unpack(self.arrays, f"o{index}.")

    def layer_output_grads(self, index: int) -> list[np.ndarray]:
        return unpack(self.arrays, f"g{index}.")

    def weights(self, index: int) -> list[tuple[str, np.ndarray]]:
        return list(zip(self.layers[index]["weights"], unpack(self.arrays, f"w{index}.")))

    def weight_grads(self, index: int) -> list[tuple[str, np.ndarray]]:
        return list(zip(self.layers[index]["weights"], unpack(self.arrays, f"wg{index}.")))


def read_snapshot(folder: str) -> Snapshot:
    """A snapshot written by ``Snapshot.write`` (the replay worker reads it so)."""
    header = json.loads((Path(folder) / "snapshot.json").read_text())
    with np.load(Path(folder) / "arrays.npz", allow_pickle=False) as stored:
        arrays = {key: stored[key] for key in stored.files}
    return Snapshot(header, arrays)


def check_format(header: dict, arrays: dict) -> None:
    """ProtocolError naming what is missing or malformed in a snapshot message, if anything is."""
    for key, kind in HEADER_FIELDS.items():
        value = header.get(key)
        if isinstance(value, bool) or not isinstance(value, kind):
            raise ProtocolError(f"snapshot header: '{key}' is missing or of the wrong type")
    if not HASH.fullmatch(header["model_hash"]):
        raise ProtocolError("snapshot header: 'model_hash' is not a hexadecimal hash")
    if not header["inputs"] or not header["outputs"]:
        raise ProtocolError("snapshot header: a model has at least one input and one output")
    expected = {f"{MODEL_INPUTS}{i}" for i in range(len(header["inputs"]))}
    expected |= {f"{kind}{k}" for k in range(len(header["outputs"])) for kind in (LABELS, PROJECTIONS)}
    for index, layer in enumerate(header["layers"]):
        if not isinstance(layer, dict) or any(not isinstance(layer.get(k), t) for k, t in LAYER_KEYS.items()):
            raise ProtocolError(f"snapshot header: layer {index} is not {{{', '.join(LAYER_KEYS)}}}")
        outputs = len(layer["output_shapes"])
        expected |= {f"o{index}.{k}" for k in range(outputs)} | {f"g{index}.{k}" for k in range(outputs)}
        expected |= {f"{kind}{index}.{j}" for j in range(len(layer["weights"])) for kind in ("w", "wg")}
    expected |= {f"{SLOTS_AFTER}{k}" for k in range(len(header["optimizer_slots"]))}
    if set(arrays) - {"model_file"} != expected:
        missing, extra = sorted(expected - set(arrays)), sorted(set(arrays) - expected - {"model_file"})
        raise ProtocolError(f"snapshot arrays: missing {missing[:5]}, unexpected {extra[:5]}")
    model_file = arrays.get("model_file")
    if model_file is not None and (model_file.dtype != np.uint8 or model_file.ndim != 1):
        raise ProtocolError("snapshot: model_file must be bytes (a 1-d uint8 array)")
