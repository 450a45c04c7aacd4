"""Diagnosis rules, paired: for each rule a case where it must fire (a real Theano-era file, or a
real model whose weights were changed in exactly one way) and cases where it must stay silent
(a matching pair, and a divergence of another cause). Real workers throughout."""
import io
import json
import shutil
import subprocess
import sys
import zipfile

import h5py
import numpy as np
import pytest

from tests.conftest import fixture_dir
from tests.diagnosis_files import causes, edited_keras_archive, kdiff_json

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def envs(env_python):
    for name in ("theano", "theano-keras1", "tensorflow", "jax"):
        env_python(name)


# ---- conv-kernel-flip ------------------------------------------------------------------------
@pytest.mark.parametrize("name, convs", [
    ("k2_vgg_channels_first", ["conv2d_1", "conv2d_2", "conv2d_3"]),
    ("k1_th_cnn", ["convolution2d_1", "convolution2d_2"]),
    ("k2_imdb_cnn", ["conv1d_1"]),
])
def test_conv_kernel_flip_fires_on_theano_files_and_the_repair_matches(envs, tmp_path, name, convs):
    folder = fixture_dir(name)
    report, result = kdiff_json(tmp_path, folder / "model.json", folder / "weights.h5", folder / "sample.npy")
    assert causes(report) == [("conv-kernel-flip", conv) for conv in convs]
    for finding in report["findings"]:
        assert finding["verified"] is True
        assert finding["before"]["max_rel"] > 1e-2 and finding["after"]["max_abs"] < 1e-5
        assert "[::-1" in finding["code"] and finding["fix"]
    assert report["after_fixes"]["all_match"] is True
    assert report["first_divergence"]["layer"] == convs[0] and result.returncode == 1
    assert "conv-kernel-flip at " + convs[0] in result.stdout and "✓ verified" in result.stdout


def test_no_rule_fires_on_a_matching_pair(envs, tmp_path):
    folder = fixture_dir("k3_cnn")
    report, result = kdiff_json(tmp_path, folder / "model.keras", folder / "sample.npy")
    assert result.returncode == 0 and report["findings"] == [] and report["unexplained"] is None


# ---- flatten-order ---------------------------------------------------------------------------
def dense_rows_in_channels_first_order(src, dst, layer="dense_1", shape=(16, 3, 3)):
    """Keras 2.3.1 laid this Dense's rows out in (H, W, C) order; store them in (C, H, W) order."""
    shutil.copy(src, dst)
    channels, height, width = shape
    with h5py.File(dst, "r+") as handle:
        dataset = handle[f"{layer}/{layer}/kernel"]
        kernel = dataset[...]
        units = kernel.shape[1]
        dataset[...] = kernel.reshape(height, width, channels, units).transpose(2, 0, 1, 3).reshape(-1, units)


def test_flatten_order_fires_after_the_flips_and_everything_then_matches(envs, tmp_path):
    folder = fixture_dir("k2_vgg_channels_first")
    permuted = tmp_path / "port_weights.h5"
    dense_rows_in_channels_first_order(folder / "weights.h5", permuted)
    report, result = kdiff_json(tmp_path, "--a", f"theano:{folder / 'model.json'},{folder / 'weights.h5'}",
                                "--b", f"tensorflow:{folder / 'model.json'},{permuted}", folder / "sample.npy")
    assert causes(report) == [("conv-kernel-flip", "conv2d_1"), ("conv-kernel-flip", "conv2d_2"),
                              ("conv-kernel-flip", "conv2d_3"), ("flatten-order", "dense_1")]
    assert report["findings"][-1]["verified"] and "transpose" in report["findings"][-1]["code"]
    assert report["after_fixes"]["all_match"] is True


def test_flatten_order_and_kernel_layout_stay_silent_on_a_conv_flip(envs, tmp_path):
    folder = fixture_dir("k2_bn_dropout_functional")
    report, _ = kdiff_json(tmp_path, folder / "model.json", folder / "weights.h5", folder / "sample.npy")
    assert {cause for cause, _ in causes(report)} == {"conv-kernel-flip"}
    assert report["after_fixes"]["all_match"] is True


# ---- kernel-layout ---------------------------------------------------------------------------
def keras_archive_with_transposed_kernel(src, dst, path="layers/conv2d_1/vars/0", axes=(0, 1, 3, 2)):
    """The same .keras model with one kernel's in/out axes swapped (a copy made in the wrong layout)."""
    with zipfile.ZipFile(src) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    weights = io.BytesIO(members["model.weights.h5"])
    with h5py.File(weights, "r+") as handle:
        handle[path][...] = np.transpose(handle[path][...], axes)
    members["model.weights.h5"] = weights.getvalue()
    with zipfile.ZipFile(dst, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)


def test_kernel_layout_fires_on_a_kernel_copied_with_swapped_axes(envs, tmp_path):
    folder = fixture_dir("k3_cnn")
    port = tmp_path / "port.keras"
    keras_archive_with_transposed_kernel(folder / "model.keras", port)
    report, _ = kdiff_json(tmp_path, "--a", f"tensorflow:{folder / 'model.keras'}", "--b", f"jax:{port}",
                           folder / "sample.npy")
    assert causes(report) == [("kernel-layout", "conv_b")]
    assert "transpose((0, 1, 3, 2))" in report["findings"][0]["code"]
    assert report["after_fixes"]["all_match"] is True


def test_kernel_layout_and_flip_stay_silent_on_a_flatten_order_fault(envs, tmp_path):
    folder = fixture_dir("k2_vgg_channels_first")
    permuted = tmp_path / "port_weights.h5"
    dense_rows_in_channels_first_order(folder / "weights.h5", permuted)
    report, _ = kdiff_json(tmp_path, "--a", f"tensorflow:{folder / 'model.json'},{folder / 'weights.h5'}",
                           "--b", f"jax:{folder / 'model.json'},{permuted}", folder / "sample.npy")
    assert causes(report) == [("flatten-order", "dense_1")]


# ---- dropout-active / nondeterministic --------------------------------------------------------
def test_dropout_active_at_inference_is_caught_by_running_each_side_twice(envs, env_python, tmp_path):
    env_python("tf-keras")
    folder = fixture_dir("tf_mc_dropout")  # tf_keras keeps Dropout(...)(x, training=True) at inference
    report, result = kdiff_json(tmp_path, folder / "model.json", folder / "weights.h5", folder / "sample.npy",
                                "--a", "tf-keras", "--b", "tensorflow")
    assert result.returncode == 1
    assert [(f["cause"], f["layer"], f["side"]) for f in report["findings"]] == [("dropout-active", "mc_dropout", "a")]
    finding = report["findings"][0]
    assert finding["after"] is None and finding["before"]["max_abs"] > 0.1
    assert finding["differing_layers"] == ["mc_dropout", "scores"] and report["after_fixes"] is None


def test_dropout_active_stays_silent_where_dropout_is_off(envs, tmp_path):
    folder = fixture_dir("k2_imdb_cnn")  # has two Dropout layers, inactive at inference
    report, _ = kdiff_json(tmp_path, folder / "model.json", folder / "weights.h5", folder / "sample.npy")
    assert "dropout-active" not in {cause for cause, _ in causes(report)}
    assert "nondeterministic" not in {cause for cause, _ in causes(report)}


# ---- nothing explains it ---------------------------------------------------------------------
def port_with_noisy_kernel(tmp_path):
    """k3_cnn with random noise added to the kernel of its first layer, conv_a: a fault no rule can undo."""
    port = tmp_path / "port.keras"

    def add_noise(handle):
        kernel = handle["layers/conv2d/vars/0"]
        kernel[...] = kernel[...] + 0.05 * np.random.RandomState(0).standard_normal(kernel.shape)

    edited_keras_archive(fixture_dir("k3_cnn") / "model.keras", port, weights=add_noise)
    return port


def test_an_unexplained_divergence_is_said_plainly_with_evidence(envs, tmp_path):
    folder = fixture_dir("k3_cnn")
    report, result = kdiff_json(tmp_path, "--a", f"tensorflow:{folder / 'model.keras'}",
                                "--b", f"jax:{port_with_noisy_kernel(tmp_path)}", folder / "sample.npy")
    assert report["findings"] == []
    assert report["unexplained"]["layer"] == "conv_a"
    assert report["unexplained"]["isolated"]["max_rel"] > 1e-3 and report["unexplained"]["input_max_rel"] == 0
    assert "No rule explains the divergence at conv_a" in result.stdout


# ---- repaired models, loaded without kdiff ------------------------------------------------------
PLAIN_KERAS3 = """
import sys, numpy as np, keras
model = keras.saving.load_model(sys.argv[1])
print(float(np.abs(model.predict(np.load(sys.argv[2]), verbose=0) - np.load(sys.argv[3])).max()))
"""
PLAIN_TF_KERAS = """
import sys, numpy as np, tf_keras
model = tf_keras.models.model_from_json(open(sys.argv[1]).read())
model.load_weights(sys.argv[4])
print(float(np.abs(model.predict(np.load(sys.argv[2]), verbose=0) - np.load(sys.argv[3])).max()))
"""


@pytest.mark.parametrize("backend", ["tensorflow", "tf-keras"])
def test_the_written_repair_loads_without_kdiff_and_reproduces_theano(envs, env_python, tmp_path, backend):
    folder = fixture_dir("k2_vgg_channels_first")
    out = tmp_path / "fixed"
    result = subprocess.run([sys.executable, "-m", "kdiff", "fix", "--no-grad", folder / "model.json", folder / "weights.h5",
                             folder / "sample.npy", "--b", backend, "-o", out, "--json", tmp_path / "r.json"],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    written = json.loads((tmp_path / "r.json").read_text())["written"]
    assert written["verified"] is True and "matches theano on all 8 layers" in written["message"]
    expected = tmp_path / "expected.npy"
    np.save(expected, np.load(folder / "activations.npz")["dense_2"])
    if backend == "tensorflow":
        command = [env_python("tensorflow"), "-c", PLAIN_KERAS3, out / "model.keras", folder / "sample.npy", expected]
    else:
        command = [env_python("tf-keras"), "-c", PLAIN_TF_KERAS, out / "model.json", folder / "sample.npy", expected,
                   out / "weights.h5"]
    plain = subprocess.run(list(map(str, command)), capture_output=True, text=True, timeout=300,
                           env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert plain.returncode == 0, plain.stderr
    assert float(plain.stdout.strip().splitlines()[-1]) < 1e-5


def test_no_repaired_model_is_written_while_a_divergence_is_unexplained(envs, tmp_path):
    folder = fixture_dir("k3_cnn")
    result = subprocess.run([sys.executable, "-m", "kdiff", "fix", "--no-grad", "--a", f"tensorflow:{folder / 'model.keras'}",
                             "--b", f"jax:{port_with_noisy_kernel(tmp_path)}", folder / "sample.npy",
                             "-o", tmp_path / "fixed"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 1
    assert "no repaired model was written" in " ".join(result.stdout.split()) and not (tmp_path / "fixed").exists()
