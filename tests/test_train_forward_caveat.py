"""kdiff train never says "agree" when the two models' forward passes already differ before the first
step and no proven fix removes it: the divergence is in the report (exit 1) and the steps are compared
with that caveat; and with the same model on both sides it does say so (paired). Real workers."""
import shutil

import h5py
import numpy as np
import pytest

from tests.conftest import fixture_dir
from tests.diagnosis_files import kdiff_train_json

pytestmark = pytest.mark.slow


def _train(tmp_path, b_weights):
    folder = fixture_dir("k2_mlp_relu")
    x = np.load(folder / "sample.npy")
    np.save(tmp_path / "x.npy", np.concatenate([x, x]))
    np.save(tmp_path / "y.npy", np.eye(3, dtype=np.float32)[np.arange(8) % 3])
    return kdiff_train_json(tmp_path, "--a", f"theano:{folder / 'model.json'},{folder / 'weights.h5'}",
                            "--b", f"tensorflow:{folder / 'model.json'},{b_weights}", tmp_path / "x.npy",
                            tmp_path / "y.npy", "--loss", "categorical_crossentropy", "--optimizer", "sgd",
                            "--steps", "2", "--batch-size", "4")


def test_an_unexplained_forward_divergence_is_reported_and_never_agrees(env_python, tmp_path):
    for env in ("theano", "tensorflow"):
        env_python(env)
    weights = tmp_path / "noisy.h5"
    shutil.copy(fixture_dir("k2_mlp_relu") / "weights.h5", weights)
    with h5py.File(weights, "r+") as handle:  # no rule explains random noise in a kernel
        kernel = handle["dense_1"]["dense_1/kernel:0" if "dense_1/kernel:0" in handle["dense_1"] else "dense_1/kernel"]
        kernel[...] = kernel[...] + np.random.default_rng(0).normal(0, 0.05, kernel.shape).astype(np.float32)
    report, result = _train(tmp_path, weights)
    assert result.returncode == 1
    assert report["forward_divergence"]["layer"] == "dense_1"
    assert report["forward_divergence"]["unexplained"]["layer"] == "dense_1"
    assert "The weight updates agree at every step" not in result.stdout
    assert "The models already differ: before the first step" in result.stdout
    assert len(report["steps"]) == 2  # the steps are still compared


def test_the_same_model_on_both_sides_has_no_forward_caveat(env_python, tmp_path):
    for env in ("theano", "tensorflow"):
        env_python(env)
    report, result = _train(tmp_path, fixture_dir("k2_mlp_relu") / "weights.h5")
    assert report["forward_divergence"] is None and "The models already differ" not in result.stdout
