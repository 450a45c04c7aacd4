"""Every public layer class of Keras 1.2.2 and 2.3.1 that kdiff did not build before, on real files that
Keras wrote on Theano (tests/fixtures/generate_theano_fixtures.py: k2_every_layer_vectors,
k2_every_layer_images, k2_cudnn, k1_every_layer, k1_every_layer_images), with real workers:
- the Theano side loads each file and reproduces what Theano computed when it was written;
- the Keras 3 side (tensorflow, and jax, torch, tf-keras on some files) builds every such layer with the
  same numbers: every layer (and, on the file without recurrent layers, every gradient) matches, with no
  finding (the files avoid the known
  causes: no convolution kernel larger than 1 that Theano would flip, no hard_sigmoid);
- masks (Masking on whole zero timesteps) reach the recurrent layers on both sides;
- CuDNNLSTM / CuDNNGRU, written as the CuDNN layers write them, load as LSTM / GRU(reset_after=True);
- `kdiff fix` writes a Keras 3 model that plain Keras 3 loads once kdiff's own layers
  (LocallyConnected, Highway, MaxoutDense, SReLU, ParametricSoftplus, ThresholdedReLU) are imported,
  and that reproduces Theano."""
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import fixture_dir
from tests.diagnosis_files import kdiff_json

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parent.parent

# fixture -> (the Theano environment that wrote it, the layer classes it is there to check, as side A names them)
EVERY_LAYER = {
    "k2_every_layer_vectors": ("theano", {
        "Masking", "LSTM", "RNN", "LocallyConnected1D", "GaussianNoise", "GaussianDropout", "AlphaDropout",
        "ActivityRegularization", "ReLU", "ThresholdedReLU", "Highway", "MaxoutDense", "Subtract", "Maximum",
        "Minimum", "Dot"}),
    "k2_every_layer_images": ("theano", {"LocallyConnected2D", "SpatialDropout1D", "SpatialDropout2D",
                                         "SpatialDropout3D", "ConvLSTM2D"}),
    "k2_cudnn": ("theano", {"LSTM", "GRU"}),   # CuDNNLSTM / CuDNNGRU in the file
    "k1_every_layer": ("theano-keras1", {
        "Masking", "LSTM", "TimeDistributedDense", "GRU", "LocallyConnected1D", "GaussianNoise", "GaussianDropout",
        "ActivityRegularization", "Highway", "MaxoutDense", "SReLU", "ParametricSoftplus", "ThresholdedReLU",
        "Merge"}),
    "k1_every_layer_images": ("theano-keras1", {"LocallyConnected2D", "SpatialDropout1D", "SpatialDropout2D",
                                                "SpatialDropout3D"}),
}
# Gradients are compared on the files without recurrent layers: Theano compiles the gradient of a scan loop
# for minutes on a 2-core machine.
WITH_GRADIENTS = {"k1_every_layer_images"}
# kdiff's own Keras 3 layers in each file (class names "kdiff>NAME" in the model.keras that `kdiff fix` writes)
KDIFF_LAYERS = {"k2_every_layer_vectors": {"LocallyConnected1D", "ThresholdedReLU", "Highway", "MaxoutDense"},
                "k1_every_layer": {"LocallyConnected1D", "ThresholdedReLU", "Highway", "MaxoutDense", "SReLU",
                                   "ParametricSoftplus"},
                "k2_every_layer_images": {"LocallyConnected2D"}}

LOAD_WITH_KDIFF_LAYERS = """
import sys, numpy as np, keras
if sys.argv[4] == "with":
    import backends.modern_keras.extra_layers  # noqa: F401
model = keras.saving.load_model(sys.argv[1])
print(float(np.abs(model.predict(np.load(sys.argv[2]), verbose=0) - np.load(sys.argv[3])).max()))
"""


def files(name):
    folder = fixture_dir(name)
    return folder / "model.json", folder / "weights.h5", folder / "sample.npy"


def assert_every_layer_matches(report, result, name):
    expected = EVERY_LAYER[name][1]
    assert result.returncode == 0, result.stdout[-3000:]
    assert report["findings"] == [] and report["first_divergence"] is None
    by_class = {}
    for layer in report["layers"]:
        by_class.setdefault(layer["class"], []).append(layer)
        assert layer["status"] == "match", layer
    assert expected <= set(by_class), expected - set(by_class)
    assert len(report["layers"]) == len(np.load(fixture_dir(name) / "activations.npz").files)


@pytest.fixture(scope="module", params=sorted(EVERY_LAYER))
def fixed(request, env_python, tmp_path_factory):
    """One `kdiff fix` run per fixture, Theano vs tensorflow, with gradients and the per-layer dump."""
    name = request.param
    env_python(EVERY_LAYER[name][0]), env_python("tensorflow")
    tmp_path = tmp_path_factory.mktemp(name)
    out = tmp_path / "fixed"
    report, result = kdiff_json(tmp_path, "fix", *files(name), "--b", "tensorflow", "-o", out,
                                "--dump", tmp_path / "dump", gradients=name in WITH_GRADIENTS)
    return name, report, result, tmp_path, out


def test_theano_side_loads_the_file_and_reproduces_what_theano_computed(fixed):
    name, report, _, tmp_path, _ = fixed
    assert report["backends"]["a"]["versions"]["keras"] == ("2.3.1" if name.startswith("k2") else "1.2.2")
    stored = np.load(fixture_dir(name) / "activations.npz")
    dumped = np.load(tmp_path / "dump" / "a.npz")
    assert sorted(dumped.files) == sorted(stored.files)
    for layer in stored.files:
        expected = stored[layer].astype(np.float64)
        scale = max(float(np.abs(expected).max()), 1e-12)
        assert float(np.abs(dumped[layer] - expected).max()) / scale < 1e-5, layer


def test_tensorflow_builds_every_layer_with_theanos_numbers(fixed):
    name, report, result, _, _ = fixed
    assert_every_layer_matches(report, result, name)
    if name not in WITH_GRADIENTS:
        return
    assert report["first_grad_divergence"] is None
    for layer in report["layers"]:
        assert layer["grad"]["match"] is True, layer["name"]
        assert all(weight["match"] for weight in (layer["weight_grads"] or {}).values()), layer["name"]


def test_the_mask_reaches_the_recurrent_layers_on_both_sides(fixed):
    name, _, _, tmp_path, _ = fixed
    if name not in ("k2_every_layer_vectors", "k1_every_layer"):
        pytest.skip("no Masking in this file")
    theano, keras3 = (np.load(tmp_path / "dump" / side) for side in ("a.npz", "b.npz"))
    # sample 0 ends in three masked timesteps: the LSTM carries its last output through them
    for outputs in (theano["lstm_1"], keras3["lstm_1"]):
        np.testing.assert_array_equal(outputs[0, -1], outputs[0, -4])
        assert np.abs(outputs[0, -4] - outputs[0, -5]).max() > 1e-3   # (an unmasked step does change it)
    np.testing.assert_allclose(keras3["lstm_1"], theano["lstm_1"], rtol=0, atol=1e-5)


def test_fix_writes_a_keras3_model_that_loads_with_kdiffs_layers_and_reproduces_theano(fixed, env_python):
    name, report, result, tmp_path, out = fixed
    assert report["written"]["verified"] is True
    if name not in KDIFF_LAYERS:
        return
    with zipfile.ZipFile(out / "model.keras") as archive:
        config = archive.read("config.json").decode()
    for class_name in KDIFF_LAYERS[name]:
        assert f'"kdiff>{class_name}"' in config, class_name
    last = report["layers"][-1]["name"]   # the model's output layer
    target = tmp_path / "expected.npy"
    np.save(target, np.load(fixture_dir(name) / "activations.npz")[last])
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONPATH": str(REPO), "KERAS_BACKEND": "tensorflow"}

    def plain(mode):
        return subprocess.run([env_python("tensorflow"), "-c", LOAD_WITH_KDIFF_LAYERS, str(out / "model.keras"),
                               str(fixture_dir(name) / "sample.npy"), str(target), mode],
                              capture_output=True, text=True, timeout=300, env=env)

    loaded = plain("with")
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    assert float(loaded.stdout.strip().splitlines()[-1]) < 1e-5
    assert plain("without").returncode != 0   # the file does need kdiff's layers


@pytest.mark.parametrize("name, b", [("k2_every_layer_vectors", "jax"), ("k1_every_layer", "jax"),
                                     ("k2_every_layer_images", "torch"), ("k2_cudnn", "torch"),
                                     ("k1_every_layer", "tf-keras"), ("k2_every_layer_vectors", "tf-keras")])
def test_other_backends_build_every_layer_with_theanos_numbers(env_python, tmp_path, name, b):
    env_python(EVERY_LAYER[name][0]), env_python(b)
    report, result = kdiff_json(tmp_path, *files(name), "--b", b)
    assert_every_layer_matches(report, result, name)
