"""kdiff end to end (real workers) on the shapes of real Theano-era files (tests/fixtures/generate_wild_fixtures.py,
generate_tf_keras_fixtures.py): Keras 1's imdb_cnn (an Embedding with Keras 1's arguments, a Lambda supplied
with --custom-objects), the Keras 1 'th' VGG whose ZeroPadding2D layers saved no dim_ordering, and full-model
.h5 files written by model.save() of Keras 1.2.2, Keras 2.3.1 and tf_keras. Each asserts the verdict."""
import json
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import fixture_dir, fixture_meta

pytestmark = pytest.mark.slow

# Keras 1 imdb_cnn's max_1d, for the Lambda layer (named after it), with the running Keras's backend
MAX_1D = '''import keras


def lambda_1(x):
    ops = getattr(keras, "ops", None) or keras.backend  # Keras 3 / Keras 1 on Theano
    return ops.max(x, axis=1)
'''


def kdiff(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "kdiff", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


def run_json(tmp_path, *args, name="r"):
    """kdiff's result and its JSON report (with --dump DIR: each side's outputs in DIR/a.npz, DIR/b.npz)."""
    result = kdiff(*args, "--json", tmp_path / f"{name}.json", "--dump", tmp_path / name)
    report = json.loads((tmp_path / f"{name}.json").read_text()) if (tmp_path / f"{name}.json").exists() else None
    return result, report


def assert_reproduces(dumped_path, fixture: str) -> None:
    """A side's dumped outputs are what the Keras that wrote the fixture computed (activations.npz), to float
    noise relative to each layer's scale (BLAS kernels differ between machines)."""
    stored, dumped = np.load(fixture_dir(fixture) / "activations.npz"), np.load(dumped_path)
    assert sorted(dumped.files) == sorted(stored.files)
    for layer in stored.files:
        expected = stored[layer].astype(np.float64)
        scale = max(float(np.abs(expected).max()), 1e-12)
        assert float(np.abs(dumped[layer] - expected).max()) / scale < 1e-5, layer


def assert_flips_proven(report: dict, conv_layers: list) -> None:
    """The verdict on a Theano-era file: every convolution's kernel flip found, verified, and with those fixes
    every layer matches."""
    assert report["first_divergence"]["layer"] == conv_layers[0]
    assert [(f["cause"], f["layer"], f["verified"]) for f in report["findings"]] == \
        [("conv-kernel-flip", layer, True) for layer in conv_layers]
    assert report["unexplained"] is None
    assert report["after_fixes"]["all_match"] is True


@pytest.fixture(scope="module")
def max_1d(tmp_path_factory):
    path = tmp_path_factory.mktemp("objects") / "imdb_functions.py"
    path.write_text(MAX_1D)
    return path


def test_keras1_imdb_cnn_embedding_and_lambda(env_python, tmp_path, max_1d):
    """Keras 1.2.2 imdb_cnn: Embedding(output_dim, input_length, dropout) -> Convolution1D -> Lambda(max_1d) ->
    Dense. Side B used to get an Embedding without output_dim (the generic Keras 1 rename made it 'units')."""
    env_python("theano-keras1"), env_python("tensorflow")
    folder = fixture_dir("k1_imdb_cnn_lambda")
    result, report = run_json(tmp_path, folder / "model.json", folder / "weights.h5", folder / "sample.npy",
                              "--custom-objects", max_1d, "--no-grad")
    assert result.returncode == 1, result.stderr
    assert report["backends"]["a"]["versions"]["keras"] == "1.2.2"
    assert_reproduces(tmp_path / "r" / "a.npz", "k1_imdb_cnn_lambda")
    statuses = {layer["name"]: layer["status"] for layer in report["layers"]}
    assert statuses["embedding_1"] == "match"
    assert_flips_proven(report, ["convolution1d_1"])
    assert "conv-kernel-flip at convolution1d_1" in result.stdout


def test_keras1_th_vgg_with_zero_padding_loads_on_both_sides(env_python, tmp_path):
    """The Keras 1 VGG16 shape: 'th', a ZeroPadding2D (no dim_ordering saved) before every conv. The theano
    worker used to build the paddings in keras.json's 'tf' and fail; both sides now take 'th' from the convs."""
    env_python("theano-keras1"), env_python("tensorflow")
    folder = fixture_dir("k1_th_vgg_zeropad")
    result, report = run_json(tmp_path, folder / "model.json", folder / "weights.h5", folder / "sample.npy",
                              "--no-grad")
    assert result.returncode == 1, result.stderr
    assert_reproduces(tmp_path / "r" / "a.npz", "k1_th_vgg_zeropad")   # Keras 1's own 'th' computation
    shapes = {layer["name"]: (layer["a_shape"], layer["b_shape"]) for layer in report["layers"]}
    assert shapes["zeropadding2d_1"] == ([4, 3, 14, 14], [4, 3, 14, 14])
    assert report["layers"][0]["status"] == "match"
    assert_flips_proven(report, fixture_meta("k1_th_vgg_zeropad")["conv_layers"])


# --- full-model .h5 files (model.save('model.h5')): architecture and weights from one file -----------------


def test_keras1_full_model_h5(env_python, tmp_path, max_1d):
    """Keras 1.2.2 model.save(): model_config without keras_version (that is a root attribute), model_weights."""
    env_python("theano-keras1"), env_python("tensorflow")
    folder = fixture_dir("k1_imdb_cnn_lambda")
    result, report = run_json(tmp_path, folder / "model.h5", folder / "sample.npy", "--custom-objects", max_1d,
                              "--no-grad")
    assert result.returncode == 1, result.stderr
    assert report["backends"]["a"]["versions"]["keras"] == "1.2.2"
    assert report["backends"]["a"]["model"].endswith("model.h5") and report["backends"]["a"]["weights"] is None
    assert_reproduces(tmp_path / "r" / "a.npz", "k1_imdb_cnn_lambda")   # the weights came from the file
    assert_flips_proven(report, ["convolution1d_1"])


def test_keras2_full_model_h5(env_python, tmp_path):
    env_python("theano"), env_python("tensorflow")
    folder = fixture_dir("k2_full_model")
    result, report = run_json(tmp_path, folder / "model.h5", folder / "sample.npy", "--no-grad")
    assert result.returncode == 1, result.stderr
    assert report["backends"]["a"]["versions"]["keras"] == "2.3.1"
    assert_reproduces(tmp_path / "r" / "a.npz", "k2_full_model")
    assert_flips_proven(report, fixture_meta("k2_full_model")["conv_layers"])


def test_tf_keras_full_model_h5_defaults_to_tf_keras_against_keras3(env_python, tmp_path):
    """A tf.keras 2.x model.save() file never ran on Theano: side A is its own Keras (tf_keras), and Keras 3 on
    TensorFlow reproduces it (both correlate: nothing to flip)."""
    env_python("tf-keras"), env_python("tensorflow")
    folder = fixture_dir("tf_full_model")
    result, report = run_json(tmp_path, folder / "model.h5", folder / "sample.npy")
    assert result.returncode == 0, result.stdout + result.stderr
    assert report["backends"]["a"]["name"] == "tf-keras" and report["backends"]["b"]["name"] == "tensorflow"
    assert [layer["name"] for layer in report["layers"]] == fixture_meta("tf_full_model")["layers"]
    assert all(layer["status"] == "match" for layer in report["layers"])
    stored, dumped = np.load(folder / "activations.npz"), np.load(tmp_path / "r" / "a.npz")
    for layer in stored.files:   # the weights are the file's: tf_keras's own outputs when it wrote it
        assert np.allclose(dumped[layer], stored[layer], rtol=1e-5, atol=1e-6), layer


def test_tf_keras_full_model_h5_on_theano(env_python, tmp_path):
    """Keras 2.3.1 on Theano loads the tf.keras file too (tf.keras's extra settings at their neutral values are
    dropped) and, seeing backend 'tensorflow' in it, flips the kernels itself: every layer matches Keras 3."""
    env_python("theano"), env_python("tensorflow")
    folder = fixture_dir("tf_full_model")
    result, report = run_json(tmp_path, folder / "model.h5", folder / "sample.npy", "--a", "theano", "--no-grad")
    assert result.returncode == 0, result.stdout + result.stderr
    assert report["backends"]["a"]["versions"]["keras"] == "2.3.1"
    assert all(layer["status"] == "match" for layer in report["layers"])
    assert report["findings"] == []


def test_train_takes_optimizer_and_loss_from_the_file(env_python, tmp_path):
    """kdiff train model.h5 x.npy y.npy: SGD(learning_rate=0.05, momentum=0.9) and categorical_crossentropy, as the
    Keras 2.3.1 model was compiled (not SGD's defaults, 0.01 and no momentum), said in the output."""
    env_python("theano"), env_python("tensorflow")
    folder = fixture_dir("k2_full_model")
    result = kdiff("train", folder / "model.h5", folder / "x.npy", folder / "y.npy", "--steps", "2",
                   "--json", tmp_path / "t.json")
    assert result.returncode in (0, 1), result.stderr
    assert "optimizer sgd (learning_rate=0.05, momentum=0.9) and loss categorical_crossentropy from" in \
        " ".join(result.stdout.split())
    report = json.loads((tmp_path / "t.json").read_text())
    assert report["loss"] == "categorical_crossentropy"
    for side in "ab":
        optimizer = report["optimizers"][side]
        assert optimizer["optimizer"] == "SGD"
        assert abs(optimizer["config"]["learning_rate"] - 0.05) < 1e-6 and abs(optimizer["config"]["momentum"] - 0.9) < 1e-6
    # the optimizers agree once the flips are fixed; what differs is BatchNormalization's moving variance rule
    assert [(f["cause"], f["verified"]) for f in report["findings"]] == [("conv-kernel-flip", True)] * 2
    assert {weight for step in report["steps"] for weight in step["diverged_weights"]} == \
        {"batch_normalization_1/moving_variance"}
