"""padding-same-asymmetry, paired: it must fire on the real Keras 2.3.1 Theano file whose 'same'
convolutions Theano pads symmetrically (an even kernel, stride 2 on an even size, even kernels
at stride 2 on an odd size, a Conv1D), together with the kernel flip on the same layer, and stay
silent on the odd stride-1 convolution beside them (where only the flip fires) and on a pair that
pads the same way. Real workers throughout."""

import numpy as np
import pytest

from tests.conftest import fixture_dir
from tests.diagnosis_files import causes, kdiff_json, plain_keras3_error

pytestmark = pytest.mark.slow
FOLDER = fixture_dir("k2_same_padding")
FLIP, PADDING = "conv-kernel-flip", "padding-same-asymmetry"


@pytest.fixture(scope="module")
def envs(env_python):
    for name in ("theano", "tensorflow", "jax"):
        env_python(name)


def test_fires_with_the_flip_where_theano_pads_otherwise_and_the_repair_reproduces_theano(envs, env_python, tmp_path):
    out = tmp_path / "fixed"
    report, result = kdiff_json(tmp_path, "fix", FOLDER / "model.json", FOLDER / "weights.h5", FOLDER / "sample.npy",
                                "-o", out, gradients=True)
    assert causes(report) == [(FLIP, "conv2d_1"), (PADDING, "conv2d_1"),   # 2x2, stride 1
                              (FLIP, "conv2d_2"),                          # 3x3, stride 1: padding agrees
                              (FLIP, "conv2d_3"), (PADDING, "conv2d_3"),   # 3x3, stride 2, 10x10 input
                              (FLIP, "conv2d_4"), (PADDING, "conv2d_4"),   # 4x2, stride 2, 5x5 input
                              (FLIP, "conv1d_1"), (PADDING, "conv1d_1")]   # Conv1D, kernel 4
    for finding in report["findings"]:
        assert finding["verified"] is True and finding["after"]["max_abs"] < 1e-5
        assert finding["before"]["max_rel"] > 0.5
        if finding["cause"] == PADDING:
            assert finding["proven_together_with"] == [FLIP, PADDING]
    by_layer = {f["layer"]: f for f in report["findings"] if f["cause"] == PADDING}
    assert "kernel_size (3, 3)" in by_layer["conv2d_1"]["fix"] and "[0:2, 0:2, :, :]" in by_layer["conv2d_1"]["code"]
    assert "kernel_size (5, 3)" in by_layer["conv2d_4"]["fix"]
    assert "np.zeros((5,) + kernel.shape[1:]" in by_layer["conv1d_1"]["code"]
    # with every fix, forward and gradients agree (a grown kernel's gradient is compared on its window)
    assert report["after_fixes"]["all_match"] is True and report["after_fixes"]["first_grad_divergence"] is None
    assert all(layer["grad_match"] for layer in report["after_fixes"]["layers"])
    assert result.returncode == 0 and report["written"]["verified"] is True
    expected = np.load(FOLDER / "activations.npz")["dense_1"]
    assert plain_keras3_error(env_python("tensorflow"), tmp_path, out / "model.keras", FOLDER / "sample.npy",
                              expected) < 1e-5


def test_stays_silent_where_both_sides_pad_the_same_way(envs, tmp_path):
    report, result = kdiff_json(tmp_path, FOLDER / "model.json", FOLDER / "weights.h5", FOLDER / "sample.npy",
                                "--a", "tensorflow", "--b", "jax")
    assert result.returncode == 0 and report["findings"] == []
    assert {layer["status"] for layer in report["layers"]} == {"match"}
