"""A snapshot from a live run (its format: kdiff.protocol.snapshot), checked, its model file kept by
hash in ``$KDIFF_HOME/attach-models``, and written as the files a replay worker reads."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from kdiff.environments import kdiff_home
from kdiff.protocol.snapshot import HASH, Snapshot, check_format
from kdiff.protocol.wire import ProtocolError


def check_snapshot(header: dict, arrays: dict) -> Snapshot:
    """The snapshot, or ProtocolError naming what is missing or malformed. A model file that came
    with it is stored in the model cache; one that did not must be there already."""
    check_format(header, arrays)
    model_file = arrays.get("model_file")
    if model_file is not None:
        keep_model(header["model_hash"], model_file)
    elif cached_model(header["model_hash"]) is None:
        raise ProtocolError(f"snapshot: no model file came, and none of hash {header['model_hash']} is kept here")
    return Snapshot(header, {key: value for key, value in arrays.items() if key != "model_file"})


def write_snapshot(snapshot: Snapshot, folder: Path) -> Path:
    """model.keras (the architecture's file, from the model cache), batch.npy (the first input),
    snapshot.json and arrays.npz in ``folder``; the model's path."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(cached_model(snapshot.header["model_hash"]), folder / "model.keras")
    np.save(folder / "batch.npy", snapshot.inputs[0])
    (folder / "snapshot.json").write_text(json.dumps(snapshot.header))
    np.savez(folder / "arrays.npz", **{k: v for k, v in snapshot.arrays.items() if k != "model_file"})
    return folder / "model.keras"


def model_cache() -> Path:
    return kdiff_home() / "attach-models"


def cached_model(model_hash: str) -> Path | None:
    """The model file of this architecture, if this machine holds it."""
    path = model_cache() / f"{model_hash}.keras"
    return path if HASH.fullmatch(model_hash) and path.is_file() else None


def keep_model(model_hash: str, model_file: np.ndarray) -> Path:
    """Store a snapshot's model file by its hash (written whole, then renamed into place)."""
    folder = model_cache()
    folder.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=folder, suffix=".part")
    with os.fdopen(handle, "wb") as file:
        file.write(model_file.tobytes())
    path = folder / f"{model_hash}.keras"
    os.replace(temporary, path)
    return path
