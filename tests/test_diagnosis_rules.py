"""Diagnosis rules that change a layer's settings or recurrent weights, paired: for each rule a case
where it must fire (a real Theano-era file, or a real model changed in exactly one way) and cases
where it must stay silent (a matching pair, in tests/test_diagnosis.py, and a divergence of another
cause, below). Real workers throughout."""
import json
import shutil
import zipfile

import h5py
import numpy as np
import pytest

from tests.conftest import fixture_dir
from tests.diagnosis_files import (causes, edited_keras_archive, kdiff_json, keras_layer_config, legacy_layer,
                                   plain_keras3_error)

pytestmark = pytest.mark.slow

@pytest.fixture(scope="module")
def envs(env_python):
    for name in ("theano", "theano-keras1", "tensorflow", "jax", "tf-keras"):
        env_python(name)


def assert_proven(finding, before_rel):
    assert finding["verified"] is True and finding["fix"] and finding["code"]
    assert finding["before"]["max_rel"] > before_rel and finding["after"]["max_abs"] < 1e-5


# ---- activation-definition ---------------------------------------------------------------------
def test_activation_definition_fires_on_keras1_hard_sigmoid_and_the_repair_loads_in_plain_keras3(
        envs, env_python, tmp_path):
    folder = fixture_dir("k1_lstm_merge")  # LSTM inner_activation='hard_sigmoid', run by Keras 1.2.2 on Theano
    out = tmp_path / "fixed"
    report, result = kdiff_json(tmp_path, "fix", folder / "model.json", folder / "weights.h5",
                                folder / "sample.npy", "-o", out)
    assert causes(report) == [("activation-definition", "lstm_1")]  # rnn-gate-order and the rest stay silent
    finding = report["findings"][0]
    assert_proven(finding, 1e-2)
    assert "[1.2, 1.2, 1.0, 1.2]" in finding["code"] and "relu6(x + 3) / 6" in finding["fix"]
    assert result.returncode == 0 and report["written"]["verified"] is True
    expected = np.load(folder / "activations.npz")["dense_2"]
    assert plain_keras3_error(env_python("tensorflow"), tmp_path, out / "model.keras", folder / "sample.npy",
                              expected) < 1e-5


def test_activation_definition_fires_on_a_keras2_gru_with_hard_sigmoid(envs, tmp_path):
    folder = fixture_dir("k2_lstm")  # matches as saved (Keras 2.3 defaults to sigmoid); switch the GRU to hard_sigmoid
    model = json.loads((folder / "model.json").read_text())
    legacy_layer(model, "gru_1")["config"]["recurrent_activation"] = "hard_sigmoid"
    (tmp_path / "model.json").write_text(json.dumps(model))
    report, _ = kdiff_json(tmp_path, tmp_path / "model.json", folder / "weights.h5", folder / "sample.npy")
    assert causes(report) == [("activation-definition", "gru_1")]
    assert_proven(report["findings"][0], 1e-3)
    assert "per gate block: z, r, h" in report["findings"][0]["code"]
    assert report["after_fixes"]["all_match"] is True


def test_activation_definition_fires_on_a_leaky_relu_slope_and_stays_silent_elsewhere(envs, tmp_path):
    folder = fixture_dir("k2_bn_dropout_functional")
    model = json.loads((folder / "model.json").read_text())
    layer = legacy_layer(model, "activation_1")
    for slope, side in ((0.3, "a"), (0.2, "b")):  # Keras 2's layer default, and Keras 3's leaky_relu default
        layer.update({"class_name": "LeakyReLU", "config": {"name": "activation_1", "trainable": True, "alpha": slope}})
        (tmp_path / f"{side}.json").write_text(json.dumps(model))
    report, _ = kdiff_json(tmp_path, "--a", f"tensorflow:{tmp_path / 'a.json'},{folder / 'weights.h5'}",
                           "--b", f"jax:{tmp_path / 'b.json'},{folder / 'weights.h5'}", folder / "sample.npy")
    assert causes(report) == [("activation-definition", "activation_1")]
    assert_proven(report["findings"][0], 1e-2)
    assert report["findings"][0]["code"] == 'model.get_layer("activation_1").negative_slope = 0.3  # read at every call, and saved'
    assert report["after_fixes"]["all_match"] is True


# ---- batchnorm-epsilon / batchnorm-training-mode / batchnorm-moving-stats -----------------------
def test_batchnorm_epsilon_fires_and_the_written_model_carries_it(envs, tmp_path):
    folder = fixture_dir("k3_cnn")
    port = tmp_path / "port.keras"  # a port that kept PyTorch's epsilon
    edited_keras_archive(folder / "model.keras", port,
                         config=lambda config: keras_layer_config(config, "bn_a").update(epsilon=1e-5))
    report, result = kdiff_json(tmp_path, "--a", f"tensorflow:{folder / 'model.keras'}", "--b", f"jax:{port}",
                                folder / "sample.npy", "--write-fixed", tmp_path / "fixed")
    assert causes(report) == [("batchnorm-epsilon", "bn_a")]
    assert_proven(report["findings"][0], 1e-4)
    assert report["findings"][0]["code"].startswith('model.get_layer("bn_a").epsilon = 0.001')
    assert report["after_fixes"]["all_match"] is True and report["written"]["verified"] is True
    with zipfile.ZipFile(tmp_path / "fixed" / "model.keras") as written:
        assert keras_layer_config(json.loads(written.read("config.json")), "bn_a")["epsilon"] == 0.001


def test_batchnorm_moving_stats_fires_on_a_squared_moving_variance(envs, tmp_path):
    folder = fixture_dir("k3_cnn")
    port = tmp_path / "port.keras"  # read Keras 1's running_std as a standard deviation, and squared it

    def square_variance(handle):
        variance = handle["layers/batch_normalization/vars/3"]
        variance[...] = variance[...] ** 2

    edited_keras_archive(folder / "model.keras", port, weights=square_variance)
    report, _ = kdiff_json(tmp_path, "--a", f"tensorflow:{folder / 'model.keras'}", "--b", f"jax:{port}",
                           folder / "sample.npy")
    # batchnorm-epsilon and batchnorm-training-mode are tried first and stay silent
    assert causes(report) == [("batchnorm-moving-stats", "bn_a")]
    assert_proven(report["findings"][0], 1e-2)
    assert "np.sqrt(variance)" in report["findings"][0]["code"]
    assert report["after_fixes"]["all_match"] is True


def test_batchnorm_training_mode_fires_where_side_a_normalises_with_batch_statistics(envs, tmp_path):
    folder = fixture_dir("k2_bn_dropout_functional")
    model = json.loads((folder / "model.json").read_text())
    legacy_layer(model, "batch_normalization_1")["inbound_nodes"][0][0][3] = {"training": True}
    (tmp_path / "model.json").write_text(json.dumps(model))
    # tf_keras honours the stored training=True at inference; Keras 3's predict overrides it
    report, _ = kdiff_json(tmp_path, tmp_path / "model.json", folder / "weights.h5", folder / "sample.npy",
                           "--a", "tf-keras", "--b", "tensorflow")
    assert causes(report) == [("batchnorm-training-mode", "batch_normalization_1")]
    assert_proven(report["findings"][0], 1e-2)
    assert "training=True" in report["findings"][0]["code"]
    assert report["after_fixes"]["all_match"] is True


# ---- rnn-gate-order ----------------------------------------------------------------------------
def test_rnn_gate_order_fires_on_lstm_weights_stored_in_keras1_gate_order(envs, tmp_path):
    folder = fixture_dir("k2_lstm")
    port_weights = tmp_path / "port_weights.h5"
    shutil.copy(folder / "weights.h5", port_weights)
    with h5py.File(port_weights, "r+") as handle:  # blocks (i, f, c, o) stored as (i, c, f, o)
        for name in ("kernel", "recurrent_kernel", "bias"):
            dataset = handle[f"lstm_1/lstm_1/{name}"]
            i, f, c, o = np.split(dataset[...], 4, axis=-1)
            dataset[...] = np.concatenate([i, c, f, o], axis=-1)
    report, _ = kdiff_json(tmp_path, "--a", f"tensorflow:{folder / 'model.json'},{folder / 'weights.h5'}",
                           "--b", f"jax:{folder / 'model.json'},{port_weights}", folder / "sample.npy")
    assert causes(report) == [("rnn-gate-order", "lstm_1")]  # activation-definition stays silent
    assert_proven(report["findings"][0], 1e-2)
    assert "(i, c, f, o)" in report["findings"][0]["fix"]
    assert report["after_fixes"]["all_match"] is True


# ---- activation-definition: GELU's two forms -------------------------------------------------
GELU_FUNCTIONS = """
import keras

def gelu_tanh(x):  # the tanh approximation (PyTorch's approximate='tanh', JAX's default)
    return keras.ops.gelu(x, approximate=True)

def gelu_exact_too(x):  # the same function as Keras's 'gelu', under another name
    return keras.ops.gelu(x, approximate=False)
"""


def gelu_ports(tmp_path, b_activation):
    folder = fixture_dir("k3_cnn")
    (tmp_path / "functions.py").write_text(GELU_FUNCTIONS)
    custom = {"module": "functions", "class_name": "function", "config": b_activation, "registered_name": "function"}
    for side, activation in (("a", "gelu"), ("b", custom)):  # Keras 3 writes a custom function as such a dict
        edited_keras_archive(folder / "model.keras", tmp_path / f"{side}.keras",
                             config=lambda config, act=activation: keras_layer_config(config, "conv_b").update(
                                 activation=act))
    return ("--a", f"tensorflow:{tmp_path / 'a.keras'}", "--b", f"jax:{tmp_path / 'b.keras'}",
            folder / "sample.npy", "--custom-objects", tmp_path / "functions.py")


def test_activation_definition_fires_on_the_tanh_form_of_gelu_and_the_repair_is_plain_keras(envs, tmp_path):
    report, result = kdiff_json(tmp_path, *gelu_ports(tmp_path, "gelu_tanh"), "--write-fixed", tmp_path / "fixed")
    assert causes(report) == [("activation-definition", "conv_b")]
    finding = report["findings"][0]
    assert_proven(finding, 1e-4)
    assert "GELU has two forms" in finding["fix"] and '"activation": "gelu"' in finding["code"]
    assert report["after_fixes"]["all_match"] is True and report["written"]["verified"] is True
    with zipfile.ZipFile(tmp_path / "fixed" / "model.keras") as written:
        assert keras_layer_config(json.loads(written.read("config.json")), "conv_b")["activation"] == "gelu"


def test_activation_definition_stays_silent_when_another_name_computes_the_same(envs, tmp_path):
    report, result = kdiff_json(tmp_path, *gelu_ports(tmp_path, "gelu_exact_too"))
    assert result.returncode == 0 and report["findings"] == []
