"""kdiff end to end with real workers, real Keras and real Theano, on files written by the
real Keras 1.2.2 and 2.3.1 (tests/fixtures/generate_theano_fixtures.py)."""
import json
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import fixture_dir, fixture_meta

pytestmark = pytest.mark.slow

CONV_FIXTURES = ["k2_imdb_cnn", "k2_vgg_channels_first", "k1_th_cnn", "k2_bn_dropout_functional"]
ALL_THEANO_FIXTURES = CONV_FIXTURES + ["k2_lstm", "k1_lstm_merge"]
DIAGNOSED = "k2_vgg_channels_first"  # the report schema's findings


def kdiff(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "kdiff", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


def files(name):
    folder = fixture_dir(name)
    return folder / "model.json", folder / "weights.h5", folder / "sample.npy"


@pytest.fixture(scope="module")
def theano_vs_tensorflow(env_python, tmp_path_factory):
    """One kdiff run per fixture (theano vs tensorflow, with --json and --dump), shared by the tests;
    the diagnosis runs on one (the others' findings are test_diagnosis*.py's)."""
    env_python("theano"), env_python("theano-keras1"), env_python("tensorflow")
    runs = {}
    for name in ALL_THEANO_FIXTURES:
        out = tmp_path_factory.mktemp(name)
        diagnose = () if name == DIAGNOSED else ("--no-diagnose",)
        result = kdiff(*files(name), "--a", "theano", "--b", "tensorflow", "--json", out / "r.json",
                       "--dump", out / "d", "--no-grad", *diagnose)  # gradients: test_gradients_isolation.py
        runs[name] = (result, out)
    return runs


@pytest.mark.parametrize("name", ALL_THEANO_FIXTURES)
def test_theano_side_reproduces_what_theano_computed(theano_vs_tensorflow, name):
    result, out = theano_vs_tensorflow[name]
    assert result.returncode in (0, 1), result.stderr
    stored = np.load(fixture_dir(name) / "activations.npz")
    dumped = np.load(out / "d" / "a.npz")
    assert sorted(dumped.files) == sorted(stored.files)
    # Theano's convolutions and products run through numpy's BLAS, whose kernels (and so float32
    # rounding) depend on the CPU: on another machine than the one that wrote the fixtures the
    # outputs differ by about 3e-7 of each layer's scale. Elementwise relative error would blow that
    # up on values near zero; any real difference (a flip, a wrong layout) is of the layer's scale.
    for layer in stored.files:
        expected = stored[layer].astype(np.float64)
        scale = max(float(np.abs(expected).max()), 1e-12)
        assert float(np.abs(dumped[layer] - expected).max()) / scale < 1e-5, layer


@pytest.mark.parametrize("name", CONV_FIXTURES)
def test_first_divergence_is_the_first_conv_layer(theano_vs_tensorflow, name):
    result, out = theano_vs_tensorflow[name]
    assert result.returncode == 1, result.stderr
    report = json.loads((out / "r.json").read_text())
    first = fixture_meta(name)["first_conv_layer"]
    assert report["first_divergence"]["layer"] == first
    statuses = {layer["name"]: layer["status"] for layer in report["layers"]}
    index = report["first_divergence"]["index"]
    assert all(layer["status"] == "match" for layer in report["layers"][:index])
    assert statuses[first] == "diverged"
    assert f"First divergence: {first}" in result.stdout


def test_report_keys_are_the_stable_schema(theano_vs_tensorflow):
    result, out = theano_vs_tensorflow[DIAGNOSED]
    report = json.loads((out / "r.json").read_text())
    assert {"kdiff_version", "backends", "layers", "first_divergence", "findings"} <= set(report)
    assert report["backends"]["a"]["name"] == "theano" and report["backends"]["b"]["name"] == "tensorflow"
    assert report["backends"]["a"]["versions"]["keras"] == "2.3.1"
    assert {"name", "versions", "device"} <= set(report["backends"]["b"])
    for layer in report["layers"]:
        assert {"name", "class", "a_shape", "b_shape", "max_abs", "max_rel", "mean_abs", "cosine", "status"} <= set(layer)
    assert len(report["findings"]) == 3
    for finding in report["findings"]:
        assert {"cause", "layer", "verified", "before", "after", "fix", "code"} <= set(finding)
        assert set(finding["before"]) == set(finding["after"]) == {"max_abs", "max_rel"}
    b_dump = np.load(out / "d" / "b.npz")
    assert sorted(b_dump.files) == sorted(layer["name"] for layer in report["layers"])


def test_keras1_file_runs_on_keras1(theano_vs_tensorflow):
    _, out = theano_vs_tensorflow["k1_th_cnn"]
    report = json.loads((out / "r.json").read_text())
    assert report["backends"]["a"]["versions"]["keras"] == "1.2.2"


def test_weights_of_another_model_are_bad_input(env_python):
    env_python("theano"), env_python("tensorflow")
    model, _, sample = files("k2_imdb_cnn")
    _, other_weights, _ = files("k2_vgg_channels_first")
    result = kdiff(model, other_weights, sample, "--no-grad")
    assert result.returncode == 2, result.stderr
    assert "weights" in result.stderr and "error:" in result.stderr


def test_lambda_bytecode_is_not_run_unless_trusted(env_python, tmp_path):
    env_python("theano"), env_python("tensorflow")
    model, weights, sample = files("k2_lambda")
    refused = kdiff(model, weights, sample, "--no-grad")
    assert refused.returncode == 2 and "marshalled bytecode" in refused.stderr, refused.stderr
    trusted = kdiff(model, weights, sample, "--trust-lambda-bytecode", "--json", tmp_path / "t.json", "--no-grad")
    assert trusted.returncode in (0, 1), trusted.stderr
    supplied = tmp_path / "functions.py"
    layer = next(layer["name"] for layer in fixture_meta("k2_lambda")["layers"] if layer["class_name"] == "Lambda")
    supplied.write_text(f"def {layer}(x):\n    return x * 2.0 + 1.0\n")  # what the file's lambda computes
    custom = kdiff(model, weights, sample, "--custom-objects", supplied, "--json", tmp_path / "c.json", "--no-grad")
    assert custom.returncode in (0, 1), custom.stderr
    as_trusted = json.loads((tmp_path / "t.json").read_text())["layers"]
    as_supplied = json.loads((tmp_path / "c.json").read_text())["layers"]
    assert [layer["max_abs"] for layer in as_trusted] == [layer["max_abs"] for layer in as_supplied]


@pytest.mark.parametrize("b", ["jax", "torch"])
def test_a_keras3_pair_agrees_on_a_keras3_model(env_python, tmp_path, b):
    env_python("tensorflow"), env_python(b)
    folder = fixture_dir("k3_cnn")
    result = kdiff(folder / "model.keras", folder / "sample.npy", "--b", b, "--json", tmp_path / "r.json")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["backends"]["a"]["name"] == "tensorflow" and report["backends"]["b"]["name"] == b
    assert [layer["name"] for layer in report["layers"]] == fixture_meta("k3_cnn")["layers"]
    assert all(layer["status"] == "match" for layer in report["layers"])
    assert report["first_divergence"] is None
    assert "All 8 layers match" in result.stdout


def test_a_side_can_run_in_a_given_interpreter(env_python, tmp_path):
    folder = fixture_dir("k3_cnn")
    result = kdiff(folder / "model.keras", folder / "sample.npy", "--b", "jax", "--b-python", env_python("jax"),
                   "--json", tmp_path / "r.json")
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["backends"]["b"]["python"] == env_python("jax") and report["backends"]["b"]["env"] is None
