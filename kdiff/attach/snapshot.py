"""A snapshot from a live run, checked, and stored as files a replay worker reads.

The message (kdiff.probe.capture) is a header ``{"type": "snapshot", "step", "loss", "backend",
"versions", "device", "layers": [{name, class_name, inbound, output_shapes, weights}], "inputs",
"optimizer_slots", "capture_seconds"}`` with arrays: ``model_file`` (the model saved as .keras, bytes as uint8),
``x``, ``y``, ``output_grad`` (d loss / d model output), and for layer ``i`` (in ``layers``
order) ``o{i}.{k}`` its outputs, ``g{i}.{k}`` d loss / d outputs, ``w{i}.{j}`` its weights,
``wg{i}.{j}`` d loss / d weights; ``s{k}`` the optimizer's slots."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kdiff.wire import ProtocolError

HEADER_FIELDS = {"step": int, "loss": (int, float, str), "backend": str, "layers": list, "inputs": list,
                 "optimizer_slots": list, "versions": dict, "device": str, "capture_seconds": (int, float)}
LAYER_KEYS = {"name": str, "class_name": str, "inbound": list, "output_shapes": list, "weights": list}


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

    def outputs(self, index: int) -> list[np.ndarray]:
        return _numbered(self.arrays, f"o{index}.")

    def output_grads(self, index: int) -> list[np.ndarray]:
        return _numbered(self.arrays, f"g{index}.")

    def weights(self, index: int) -> list[tuple[str, np.ndarray]]:
        return list(zip(self.layers[index]["weights"], _numbered(self.arrays, f"w{index}.")))

    def weight_grads(self, index: int) -> list[tuple[str, np.ndarray]]:
        return list(zip(self.layers[index]["weights"], _numbered(self.arrays, f"wg{index}.")))

    def write(self, folder: Path) -> Path:
        """model.keras, batch.npy, snapshot.json and arrays.npz in ``folder``; the model's path."""
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "model.keras").write_bytes(self.arrays["model_file"].tobytes())
        np.save(folder / "batch.npy", self.arrays["x"])
        (folder / "snapshot.json").write_text(json.dumps(self.header))
        np.savez(folder / "arrays.npz", **{k: v for k, v in self.arrays.items() if k != "model_file"})
        return folder / "model.keras"


def read_snapshot(folder: str) -> Snapshot:
    """A snapshot written by ``Snapshot.write`` (the replay worker reads it so)."""
    header = json.loads((Path(folder) / "snapshot.json").read_text())
    with np.load(Path(folder) / "arrays.npz", allow_pickle=False) as stored:
        arrays = {key: stored[key] for key in stored.files}
    return Snapshot(header, arrays)


def check_snapshot(header: dict, arrays: dict) -> Snapshot:
    """The snapshot, or ProtocolError naming what is missing or malformed."""
    for key, kind in HEADER_FIELDS.items():
        value = header.get(key)
        if isinstance(value, bool) or not isinstance(value, kind):
            raise ProtocolError(f"snapshot header: '{key}' is missing or of the wrong type")
    expected = {"model_file", "x", "y", "output_grad"}
    for index, layer in enumerate(header["layers"]):
        if not isinstance(layer, dict) or any(not isinstance(layer.get(k), t) for k, t in LAYER_KEYS.items()):
            raise ProtocolError(f"snapshot header: layer {index} is not {{{', '.join(LAYER_KEYS)}}}")
        outputs = len(layer["output_shapes"])
        expected |= {f"o{index}.{k}" for k in range(outputs)} | {f"g{index}.{k}" for k in range(outputs)}
        expected |= {f"{kind}{index}.{j}" for j in range(len(layer["weights"])) for kind in ("w", "wg")}
    expected |= {f"s{k}" for k in range(len(header["optimizer_slots"]))}
    if set(arrays) != expected:
        missing, extra = sorted(expected - set(arrays)), sorted(set(arrays) - expected)
        raise ProtocolError(f"snapshot arrays: missing {missing[:5]}, unexpected {extra[:5]}")
    if arrays["model_file"].dtype != np.uint8 or arrays["model_file"].ndim != 1:
        raise ProtocolError("snapshot: model_file must be bytes (a 1-d uint8 array)")
    return Snapshot(header, dict(arrays))


def _numbered(arrays: dict, prefix: str) -> list[np.ndarray]:
    keys = [key for key in arrays if key.startswith(prefix)]
    return [arrays[key] for key in sorted(keys, key=lambda key: int(key[len(prefix):]))]
