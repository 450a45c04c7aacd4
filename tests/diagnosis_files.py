"""Running kdiff as a user does for the diagnosis tests, and making ports with one fault each."""
from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile

import h5py
import numpy as np


def kdiff_train_json(tmp_path, *args):
    """`python -m kdiff train ARGS --json` (exit 0 or 1 expected): the JSON report and the finished process."""
    out = tmp_path / "train.json"
    result = subprocess.run([sys.executable, "-m", "kdiff", "train", *map(str, args), "--json", str(out)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode in (0, 1), result.stdout + result.stderr
    return json.loads(out.read_text()), result


def kdiff_json(tmp_path, *args, gradients: bool = False):
    """`python -m kdiff ARGS --json` (exit 0 or 1 expected): the JSON report and the finished process.
    Gradients are compared only when a test asks for them (they cost a backward pass on each side)."""
    out = tmp_path / "r.json"
    extra = [] if gradients else ["--no-grad"]
    result = subprocess.run([sys.executable, "-m", "kdiff", *map(str, args), *extra, "--json", str(out)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode in (0, 1), result.stdout + result.stderr
    return json.loads(out.read_text()), result


PLAIN_KERAS3_PREDICT = """
import sys, numpy as np, keras
model = keras.saving.load_model(sys.argv[1])
print(float(np.abs(model.predict(np.load(sys.argv[2]), verbose=0) - np.load(sys.argv[3])).max()))
"""


def plain_keras3_error(python: str, tmp_path, model_file, sample_path, expected: np.ndarray) -> float:
    """Max |prediction - expected| of a written model loaded and run by plain Keras 3 in a process
    of its own (``python``: a kdiff environment's interpreter; kdiff is not on its path)."""
    target = tmp_path / "expected.npy"
    np.save(target, expected)
    plain = subprocess.run([python, "-c", PLAIN_KERAS3_PREDICT, str(model_file), str(sample_path), str(target)],
                           capture_output=True, text=True, timeout=300,
                           env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert plain.returncode == 0, plain.stderr
    return float(plain.stdout.strip().splitlines()[-1])


def causes(report):
    return [(finding["cause"], finding["layer"]) for finding in report["findings"]]


def edited_keras_archive(src, dst, weights=None, config=None):
    """A copy of a `.keras` file with `weights(handle)` applied to its open model.weights.h5 and
    `config(dict)` to its config.json (each edits in place)."""
    with zipfile.ZipFile(src) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    if weights is not None:
        buffer = io.BytesIO(members["model.weights.h5"])
        with h5py.File(buffer, "r+") as handle:
            weights(handle)
        members["model.weights.h5"] = buffer.getvalue()
    if config is not None:
        edited = json.loads(members["config.json"])
        config(edited)
        members["config.json"] = json.dumps(edited).encode()
    with zipfile.ZipFile(dst, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)


def keras_layer_config(archive_config: dict, name: str) -> dict:
    """The config of the layer called `name` inside a `.keras` file's config.json."""
    return next(layer["config"] for layer in archive_config["config"]["layers"] if layer["config"]["name"] == name)


def legacy_layer(model_json: dict, name: str) -> dict:
    """The entry of the layer called `name` in a Keras 1/2 model.json (functional or Sequential)."""
    return next(layer for layer in model_json["config"]["layers"]
                if layer.get("name", layer["config"].get("name")) == name)
