"""Derived tolerances (kdiff.tolerances) with real workers: an honest pair still matches on every
layer, and a real fault (Theano's flipped kernels) still diverges at the right layer."""
import json
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import fixture_dir, fixture_meta

pytestmark = pytest.mark.slow


def kdiff(*args):
    return subprocess.run([sys.executable, "-m", "kdiff", *map(str, args)], capture_output=True, text=True,
                          timeout=900)


def test_an_honest_keras3_pair_matches_within_tolerances_tighter_than_the_old_default(env_python, tmp_path):
    env_python("tensorflow"), env_python("torch")
    folder = fixture_dir("k3_cnn")
    result = kdiff(folder / "model.keras", folder / "sample.npy", "--b", "torch", "--no-grad",
                   "--json", tmp_path / "r.json", "--dump", tmp_path / "d")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["tolerance"] == {"mode": "derived"}
    a, b = np.load(tmp_path / "d" / "a.npz"), np.load(tmp_path / "d" / "b.npz")
    for layer in report["layers"]:
        tolerance = layer["tolerance"]
        assert layer["status"] == "match" and tolerance["reason"].startswith("float32"), layer
        assert tolerance["rtol"] < 1e-5  # ten times tighter than the fixed 1e-4
        # the honest error stays well inside: at most half of what the derived tolerance allows
        x, y = a[layer["name"]].astype(np.float64), b[layer["name"]].astype(np.float64)
        allowed = tolerance["atol"] + tolerance["rtol"] * np.maximum(np.abs(x), np.abs(y))
        assert (np.abs(x - y) <= allowed / 2).all(), layer["name"]
    dense = next(layer for layer in report["layers"] if layer["class"] == "Dense")
    activation = next(layer for layer in report["layers"] if layer["name"] == "conv_a")
    assert "K=8" in dense["tolerance"]["reason"] and "K=27" in activation["tolerance"]["reason"]


def test_flipped_theano_kernels_still_diverge_and_the_fixed_model_matches(env_python, tmp_path):
    env_python("theano"), env_python("tensorflow")
    folder = fixture_dir("k2_vgg_channels_first")
    result = kdiff(folder / "model.json", folder / "weights.h5", folder / "sample.npy", "--a", "theano",
                   "--b", "tensorflow", "--no-grad", "--json", tmp_path / "r.json")
    assert result.returncode == 1, result.stdout + result.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    first = fixture_meta("k2_vgg_channels_first")["first_conv_layer"]
    assert report["first_divergence"]["layer"] == first
    assert "tolerance: float32 2ε·√K, K=27" in result.stdout  # explained where the layer fails it
    assert [finding["cause"] for finding in report["findings"]] == ["conv-kernel-flip"] * 3
    # after the flips, Theano and TensorFlow agree within every layer's derived tolerance
    assert report["after_fixes"]["all_match"], report["after_fixes"]
    assert all(layer["tolerance"]["rtol"] < 1e-5 for layer in report["after_fixes"]["layers"])
