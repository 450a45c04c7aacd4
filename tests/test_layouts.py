"""Comparing a model with its port to the other memory layout: `--b-layout` rebuilds side B's Keras 1/2
model channels_last (what a person converting it does, the Dense after a Flatten left unpermuted), and
a port that is channels_last by itself gets the sample transposed (`input-layout`). Real workers, real
Theano-era files and real Keras 3 throughout."""
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import fixture_dir
from tests.diagnosis_files import causes, kdiff_json

pytestmark = pytest.mark.slow

CHANNELS_LAST = ("--b-layout", "channels_last")
# The repaired or ported model in a plain Keras 3 process (no kdiff): max |prediction - expected|, the
# sample given as stored (N, C, H, W) or transposed to (N, H, W, C); "refused" when Keras will not run it.
PLAIN_KERAS3_BOTH_LAYOUTS = """
import sys, numpy as np, keras
model = keras.saving.load_model(sys.argv[1])
sample, expected = np.load(sys.argv[2]), np.load(sys.argv[3])
for x in (sample, np.transpose(sample, (0, 2, 3, 1))):
    try:
        print(float(np.abs(model.predict(x, verbose=0) - expected).max()))
    except Exception:
        print("refused")
"""


@pytest.fixture(scope="module")
def envs(env_python):
    for name in ("theano", "theano-keras1", "tensorflow", "jax"):
        env_python(name)


def plain_keras3(env_python, tmp_path, script, *args):
    plain = subprocess.run([env_python("tensorflow"), "-c", script, *map(str, args)], capture_output=True,
                           text=True, timeout=300, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert plain.returncode == 0, plain.stderr
    return plain.stdout.strip().splitlines()


def assert_verified(finding):
    assert finding["verified"] is True and finding["fix"] and finding["code"]
    assert finding["after"]["max_abs"] < 1e-5


def test_b_layout_finds_the_conv_flips_and_the_unpermuted_dense_and_the_repair_runs_in_plain_keras3(
        envs, env_python, tmp_path):
    folder = fixture_dir("k1_th_cnn")  # Keras 1.2.2 on Theano, dim_ordering 'th', Flatten then Dense
    out = tmp_path / "fixed"
    report, result = kdiff_json(tmp_path, "fix", folder / "model.json", folder / "weights.h5", folder / "sample.npy",
                                "--b", "tensorflow", *CHANNELS_LAST, "-o", out, gradients=True)
    assert causes(report) == [("conv-kernel-flip", "convolution2d_1"), ("conv-kernel-flip", "convolution2d_2"),
                              ("flatten-order", "dense_1")]
    for finding in report["findings"]:
        assert_verified(finding)
        assert finding["before"]["max_rel"] > 0.5  # each really diverges without its fix
    assert "reshape(8, 4, 4, 10).transpose(1, 2, 0, 3)" in report["findings"][2]["code"]
    assert report["backends"]["b"]["layout"] == "channels_last"
    assert report["backends"]["a"]["layout"] == "channels_first"
    layers = {layer["name"]: layer for layer in report["layers"]}
    assert layers["convolution2d_1"]["b_shape"] == [4, 12, 12, 6] and layers["convolution2d_1"]["a_shape"] == [4, 6, 12, 12]
    assert "transposed" in layers["maxpooling2d_1"]["layout"]  # 6x6x6: equal shapes, still moved (layouts differ)
    assert "reordered" in layers["flatten_1"]["layout"] and layers["dense_1"]["layout"] is None
    after = report["after_fixes"]
    assert after["all_match"] is True
    # the Dense kernel's gradient is compared with its rows in side B's order
    assert next(layer for layer in after["layers"] if layer["name"] == "dense_1")["grad_match"] is True
    assert result.returncode == 0 and report["written"]["verified"] is True
    expected = tmp_path / "expected.npy"
    np.save(expected, np.load(folder / "activations.npz")["activation_2"])
    as_stored, transposed = plain_keras3(env_python, tmp_path, PLAIN_KERAS3_BOTH_LAYOUTS, out / "model.keras",
                                         folder / "sample.npy", expected)
    assert float(transposed) < 1e-5
    assert as_stored == "refused" or float(as_stored) > 1e-2


def test_b_layout_on_a_keras2_channels_first_flatten_finds_only_the_conv_flips(envs, tmp_path):
    # Keras 2.3.1's channels_first Flatten already transposes to channels_last order: its Dense is right
    folder = fixture_dir("k2_vgg_channels_first")
    report, _ = kdiff_json(tmp_path, folder / "model.json", folder / "weights.h5", folder / "sample.npy",
                           *CHANNELS_LAST)
    assert causes(report) == [("conv-kernel-flip", "conv2d_1"), ("conv-kernel-flip", "conv2d_2"),
                              ("conv-kernel-flip", "conv2d_3")]
    assert all(finding["verified"] for finding in report["findings"])
    assert report["after_fixes"]["all_match"] is True
    assert next(layer for layer in report["layers"] if layer["name"] == "flatten_1")["layout"] is None


@pytest.fixture(scope="module")
def channels_last_port(envs, tmp_path_factory):
    """A channels_last Keras 3 port of the channels_first VGG (tensorflow and jax agree on it, so the
    written model carries no repair), written by Keras 3 itself through `kdiff fix`."""
    folder = fixture_dir("k2_vgg_channels_first")
    tmp = tmp_path_factory.mktemp("port")
    report, result = kdiff_json(tmp, "fix", folder / "model.json", folder / "weights.h5", folder / "sample.npy",
                                "--a", "tensorflow", "--b", "jax", *CHANNELS_LAST, "-o", tmp / "port",
                                gradients=True)
    assert result.returncode == 0, result.stdout + result.stderr
    return report, tmp / "port" / "model.keras"


def test_a_matching_pair_in_two_layouts_reports_no_findings(channels_last_port):
    report, _ = channels_last_port  # tensorflow channels_first vs jax rebuilt channels_last
    assert report["findings"] == [] and report["first_divergence"] is None
    assert all(layer["status"] == "match" for layer in report["layers"])
    assert all(layer["grad"]["match"] for layer in report["layers"])
    assert report["written"]["verified"] is True


def test_input_layout_fires_on_a_channels_last_port_and_the_port_needs_the_transposed_sample(
        channels_last_port, env_python, tmp_path):
    folder = fixture_dir("k2_vgg_channels_first")
    _, port = channels_last_port
    report, result = kdiff_json(tmp_path, "--a", f"tensorflow:{folder / 'model.json'},{folder / 'weights.h5'}",
                                "--b", f"tensorflow:{port}", folder / "sample.npy", "--dump", tmp_path / "dump",
                                gradients=True)
    assert causes(report) == [("input-layout", "conv2d_1")]
    finding = report["findings"][0]
    assert_verified(finding)
    assert "(N, H, W, C)" in finding["fix"] and "np.transpose(sample, (0, 2, 3, 1))" in finding["code"]
    assert report["backends"]["b"]["layout"] == "channels_last"
    assert all(layer["status"] == "match" for layer in report["layers"]) and result.returncode == 0
    assert all(layer["grad"]["match"] for layer in report["layers"])
    assert np.load(tmp_path / "dump" / "b.npz")["conv2d_1"].shape == (4, 16, 16, 8)  # as side B's worker gave it
    # the divergence is real: fed the sample as stored, the port refuses it or computes something else
    expected = tmp_path / "expected.npy"
    np.save(expected, np.load(tmp_path / "dump" / "a.npz")["dense_2"])
    as_stored, transposed = plain_keras3(env_python, tmp_path, PLAIN_KERAS3_BOTH_LAYOUTS, port,
                                         folder / "sample.npy", expected)
    assert as_stored == "refused" or float(as_stored) > 1e-2
    assert float(transposed) < 1e-5


def test_input_layout_stays_silent_on_a_pair_in_the_same_layout(channels_last_port, tmp_path):
    _, port = channels_last_port
    sample = tmp_path / "nhwc.npy"
    np.save(sample, np.transpose(np.load(fixture_dir("k2_vgg_channels_first") / "sample.npy"), (0, 2, 3, 1)))
    report, result = kdiff_json(tmp_path, "--a", f"tensorflow:{port}", "--b", f"jax:{port}", sample)
    assert report["findings"] == [] and result.returncode == 0
    assert all(layer["layout"] is None for layer in report["layers"])


def test_a_sample_that_fits_neither_layout_is_refused(channels_last_port, tmp_path):
    _, port = channels_last_port
    folder = fixture_dir("k2_vgg_channels_first")
    sample = tmp_path / "wrong.npy"
    np.save(sample, np.zeros((2, 3, 15, 16), np.float32))
    result = subprocess.run([sys.executable, "-m", "kdiff", "--a", f"tensorflow:{folder / 'model.json'},"
                             f"{folder / 'weights.h5'}", "--b", f"jax:{port}", str(sample)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 2 and "sample" in result.stderr.lower()


@pytest.mark.parametrize("args, words", [
    (("--b", "theano"), "theano"),                      # the theano worker builds a model only as its file states
    (("--a", "tensorflow", "--b", "jax"), "keras 3"),   # a Keras 3 file is built in the layout it states
])
def test_b_layout_is_refused_where_side_b_cannot_be_rebuilt(tmp_path, args, words):
    folder = fixture_dir("k3_cnn" if "jax" in args else "k2_vgg_channels_first")
    files = [folder / "model.keras"] if "jax" in args else [folder / "model.json", folder / "weights.h5"]
    result = subprocess.run([sys.executable, "-m", "kdiff", *map(str, files), str(folder / "sample.npy"), *args,
                             *CHANNELS_LAST], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and words in result.stderr.lower() and "--b-layout" in result.stderr
