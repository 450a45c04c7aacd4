"""The Theano-era layers the Keras 3 / tf_keras translation builds beyond plain convolutions: transposed,
separable and depthwise convolutions, Conv3D, 3D pooling/padding/cropping/upsampling, UpSampling1D.
On the real Keras 2.3.1 Theano file `k2_more_layers` and the real Keras 1.2.2 one `k1_more_layers`
(Deconvolution2D, AtrousConvolution2D and the 3D layers by their Keras 1 arguments), with real workers:
- the Theano side reproduces what Theano computed when the file was written;
- `kdiff fix` finds the kernel flips exactly where Theano flips (Conv2DTranspose/Deconvolution2D, Conv3D,
  Conv3DTranspose, AtrousConvolution2D) and nowhere else (Keras 2.3.1 reverses separable and depthwise
  kernels before Theano's flipping conv2d, so those load as stored), proves each, and writes a model
  that plain Keras 3 loads and that reproduces Theano;
- two modern workers on the same file agree (no findings)."""
from dataclasses import dataclass

import numpy as np
import pytest

from tests.conftest import fixture_dir
from tests.diagnosis_files import causes, kdiff_json, plain_keras3_error

pytestmark = pytest.mark.slow
FLIP = "conv-kernel-flip"


@dataclass(frozen=True)
class Expected:
    side_a: str                 # the Theano environment that wrote the file
    flipped: tuple              # the layers whose kernels Theano flips, in model order
    loaded_as_stored: tuple     # convolutions that must match with their kernels as stored
    transpose_code: str         # the flip of the (transposed) first layer: the first two axes


EXPECTED = {
    # Keras 2.3.1: SeparableConv1D/2D and DepthwiseConv2D reverse the kernel before Theano's flipping conv2d.
    "k2_more_layers": Expected("theano", ("conv2d_transpose_1", "conv3d_1", "conv3d_transpose_1"),
                               ("separable_conv2d_1", "depthwise_conv2d_1", "separable_conv1d_1"),
                               "kernel[::-1, ::-1, :, :]"),
    # Keras 1.2.2: Deconvolution2D ('tf', stored (rows, cols, in, out)) and AtrousConvolution2D.
    "k1_more_layers": Expected("theano-keras1", ("deconvolution2d_1", "atrousconvolution2d_1"), (),
                               "kernel[::-1, ::-1, :, :]"),
}


def files(name):
    folder = fixture_dir(name)
    return folder / "model.json", folder / "weights.h5", folder / "sample.npy"


@pytest.fixture(scope="module", params=sorted(EXPECTED))
def fixed(request, env_python, tmp_path_factory):
    """One `kdiff fix` run per fixture, Theano vs tensorflow, with gradients and the per-layer dump."""
    name = request.param
    env_python(EXPECTED[name].side_a), env_python("tensorflow")
    tmp_path = tmp_path_factory.mktemp(name)
    out = tmp_path / "fixed"
    report, result = kdiff_json(tmp_path, "fix", *files(name), "--b", "tensorflow", "-o", out,  # side A: theano
                                "--dump", tmp_path / "dump", gradients=True)
    return name, report, result, tmp_path, out


def test_theano_side_reproduces_what_theano_computed(fixed):
    name, report, _, tmp_path, _ = fixed
    assert report["backends"]["a"]["versions"]["keras"] == ("2.3.1" if name.startswith("k2") else "1.2.2")
    stored = np.load(fixture_dir(name) / "activations.npz")
    dumped = np.load(tmp_path / "dump" / "a.npz")
    assert sorted(dumped.files) == sorted(stored.files)
    for layer in stored.files:  # relative to the layer's scale, as in test_forward_diff.py
        expected = stored[layer].astype(np.float64)
        scale = max(float(np.abs(expected).max()), 1e-12)
        assert float(np.abs(dumped[layer] - expected).max()) / scale < 1e-5, layer


def test_fix_flips_where_theano_flips_and_the_repair_reproduces_theano_in_plain_keras3(fixed, env_python):
    name, report, result, tmp_path, out = fixed
    expected = EXPECTED[name]
    assert report["first_divergence"]["layer"] == expected.flipped[0]
    assert causes(report) == [(FLIP, layer) for layer in expected.flipped]
    for finding in report["findings"]:
        assert finding["verified"] is True and finding["after"]["max_abs"] < 1e-5
        assert finding["before"]["max_rel"] > 0.5  # each really diverges without its fix
    first = report["findings"][0]
    assert expected.transpose_code in first["code"]
    assert set(expected.loaded_as_stored) <= set(first["explains"])  # they match once their input does
    assert report["after_fixes"]["all_match"] is True and report["after_fixes"]["first_grad_divergence"] is None
    # (failed once in a fresh-clone CI under heavy load, 2026-12-04, not reproduced since: say which layer)
    assert [layer for layer in report["after_fixes"]["layers"] if not layer["grad_match"]] == []
    assert result.returncode == 0 and report["written"]["verified"] is True
    expected = np.load(fixture_dir(name) / "activations.npz")["dense_1"]
    assert plain_keras3_error(env_python("tensorflow"), tmp_path, out / "model.keras",
                              fixture_dir(name) / "sample.npy", expected) < 1e-5


@pytest.mark.parametrize("name, a, b", [("k2_more_layers", "tensorflow", "jax"),
                                         ("k1_more_layers", "tensorflow", "jax"),
                                         ("k2_more_layers", "tf-keras", "tensorflow")])
def test_two_modern_workers_agree_on_the_file(env_python, tmp_path, name, a, b):
    env_python(a), env_python(b)
    report, result = kdiff_json(tmp_path, *files(name), "--a", a, "--b", b)
    assert result.returncode == 0 and report["findings"] == []
    assert {layer["status"] for layer in report["layers"]} == {"match"}
    assert len(report["layers"]) == len(np.load(fixture_dir(name) / "activations.npz").files)
