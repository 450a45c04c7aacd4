"""kdiff train derives each layer's tolerance for its forward check and repair, scaled by the data
(issue #16): on a Keras 2.3.1 Conv2D 7x7 fed unnormalised 0-255 pixels (tests/fixtures/k2_pixels_conv7),
the kernel flip is proven at that scale and the steps' losses then agree; with the fixed tolerance
of old (--atol 1e-5 --rtol 1e-4) the flip cannot be verified, and that is said, never "agree". Real workers."""
import numpy as np
import pytest

from tests.conftest import fixture_dir
from tests.diagnosis_files import kdiff_train_json

pytestmark = pytest.mark.slow


def _train(tmp_path, *extra):
    folder = fixture_dir("k2_pixels_conv7")
    np.save(tmp_path / "y.npy", np.eye(10, dtype=np.float32)[np.arange(8) % 10])
    return kdiff_train_json(tmp_path, folder / "model.json", folder / "weights.h5", folder / "sample.npy",
                            tmp_path / "y.npy", "--optimizer", "adam", "--loss", "categorical_crossentropy",
                            "--steps", "1", "--batch-size", "4", *extra)


def test_unnormalised_pixels_the_flip_is_proven_at_their_scale_and_the_losses_agree(env_python, tmp_path):
    for env in ("theano", "tensorflow"):
        env_python(env)
    report, _ = _train(tmp_path)
    assert [(f["cause"], f["layer"]) for f in report["findings"] if f["cause"] == "conv-kernel-flip"] == [
        ("conv-kernel-flip", "conv2d_1")]
    assert report["forward_divergence"] is None
    step = report["steps"][0]
    assert step["loss_a"] == pytest.approx(step["loss_b"], rel=1e-5)


def test_with_the_fixed_tolerance_of_old_the_flip_is_not_verified_and_that_is_said(env_python, tmp_path):
    for env in ("theano", "tensorflow"):
        env_python(env)
    report, result = _train(tmp_path, "--atol", "1e-5", "--rtol", "1e-4")
    assert report["forward_divergence"]["layer"] == "conv2d_1" and result.returncode == 1
    assert "The weight updates agree at every step" not in result.stdout
