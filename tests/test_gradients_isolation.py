"""Gradients in the report, per-layer isolation, and the noise floor; real workers throughout.
(Finite-difference checks of each worker's gradients are in test_worker_primitives.py.)"""
import json
import subprocess
import sys

import pytest

from tests.conftest import fixture_dir
from tests.diagnosis_files import kdiff_json

pytestmark = pytest.mark.slow


def legacy(name):
    folder = fixture_dir(name)
    return folder / "model.json", folder / "weights.h5", folder / "sample.npy"


@pytest.fixture(scope="module")
def envs(env_python):
    for name in ("theano", "tensorflow", "torch", "tf-keras"):
        env_python(name)


@pytest.mark.parametrize("name, own_computation_differs", [
    ("k2_vgg_channels_first", {"conv2d_1", "conv2d_2", "conv2d_3"}),
    ("k2_bn_dropout_functional", {"conv2d_1", "conv2d_3"}),  # the 3x3 convs; the 1x1 conv2d_2 needs no flip
])
def test_isolation_marks_exactly_the_layers_whose_own_computation_differs(envs, tmp_path, name,
                                                                          own_computation_differs):
    report, result = kdiff_json(tmp_path, *legacy(name), "--isolate", "--no-diagnose")
    assert result.returncode == 1
    diverged = {layer["name"] for layer in report["layers"] if layer["status"] == "diverged"}
    assert diverged == own_computation_differs
    for layer in report["layers"]:
        assert layer["isolated"]["match"] is (layer["name"] not in own_computation_differs)
    without = json.loads(json.dumps(report))  # the same comparison without isolation marks only the first
    plain, _ = kdiff_json(tmp_path, *legacy(name), "--no-diagnose")
    assert [layer["name"] for layer in plain["layers"] if layer["status"] == "diverged"] == [
        without["first_divergence"]["layer"]]


def test_gradients_of_two_keras3_backends_agree_on_every_layer_and_weight(envs, tmp_path):
    folder = fixture_dir("k3_cnn")
    report, result = kdiff_json(tmp_path, folder / "model.keras", folder / "sample.npy", "--b", "torch", gradients=True)
    assert result.returncode == 0 and report["first_grad_divergence"] is None
    for layer in report["layers"]:
        assert layer["grad"]["match"] is True, layer["name"]
        assert all(metrics["match"] for metrics in layer["weight_grads"].values())
    convs = {layer["name"]: layer for layer in report["layers"]}
    assert set(convs["conv_a"]["weight_grads"]) == {"conv_a/kernel", "conv_a/bias"}
    assert "gradients match" in " ".join(result.stdout.split())


def test_diverging_gradients_are_reported(envs, tmp_path):
    report, _ = kdiff_json(tmp_path, *legacy("k2_imdb_cnn"), "--no-diagnose", gradients=True)
    grads = {layer["name"]: layer["grad"] for layer in report["layers"]}
    assert report["first_grad_divergence"] is not None
    assert grads["conv1d_1"]["match"] is False and grads["dense_2"]["match"] is False


def test_a_side_that_disagrees_with_itself_is_reported_before_any_comparison(envs, tmp_path):
    folder = fixture_dir("tf_mc_dropout")
    report, result = kdiff_json(tmp_path, folder / "model.json", folder / "weights.h5", folder / "sample.npy",
                                "--a", "tf-keras", "--b", "tensorflow", "--no-diagnose")
    assert report["noise_floor"]["a"]["deterministic"] is False
    assert list(report["noise_floor"]["a"]["differing_layers"]) == ["mc_dropout", "scores"]
    assert report["noise_floor"]["b"] == {"deterministic": True, "differing_layers": {}}
    assert "Side A disagrees with itself" in result.stdout


def test_a_backend_that_cannot_differentiate_the_model_costs_only_the_gradients(envs, tmp_path):
    # tf_keras on CPU has no gradient for channels_first max pooling (TensorFlow's MaxPoolGrad is NHWC-only)
    report, result = kdiff_json(tmp_path, *legacy("k2_vgg_channels_first"), "--b", "tf-keras", "--no-diagnose",
                                gradients=True)
    assert result.returncode == 1 and report["first_divergence"]["layer"] == "conv2d_1"
    assert any(note.startswith("gradients were not compared: worker b (tf-keras) failed during 'forward_backward'")
               for note in report["notes"])
    assert all(layer["grad"] is None for layer in report["layers"])


def test_gradients_agree_with_theano_after_the_known_repair(envs, tmp_path):
    # the flipped kernel's gradient is the flipped gradient: kdiff maps it back before comparing
    report, _ = kdiff_json(tmp_path, *legacy("k2_imdb_cnn"), gradients=True)
    assert [finding["cause"] for finding in report["findings"]] == ["conv-kernel-flip"]
    after = report["after_fixes"]
    assert after["all_match"] is True and after["first_grad_divergence"] is None
    # (dense_2's bias gradient, a sum over 4 samples that cancels, may differ by more than its relative
    # tolerance on one CPU and not another: it is then carried, its backward alone within side A's spread)
    assert all(layer["grad_match"] is True or layer["grad_carried"] is True for layer in after["layers"])


def test_gradients_of_the_models_own_loss_on_labels(envs, tmp_path):
    """--labels/--loss: both sides differentiate binary_crossentropy on the labels (Keras 2.3.1's on
    Theano, Keras 3's on TensorFlow); after the known repair every gradient matches, and the report
    says what the gradients are of. The same labels with another loss give other gradients."""
    import numpy as np

    labels = tmp_path / "y.npy"
    np.save(labels, np.array([[1], [0], [0], [1]], np.float32))
    reports = {}
    for loss in ("binary_crossentropy", "mse"):
        reports[loss], _ = kdiff_json(tmp_path, *legacy("k2_imdb_cnn"), "--labels", labels, "--loss", loss,
                                      gradients=True)
        assert reports[loss]["gradient_loss"] == {"kind": "loss", "name": loss, "labels": [str(labels)]}
        after = reports[loss]["after_fixes"]
        assert after["all_match"] is True and after["first_grad_divergence"] is None
        assert all(layer["grad_match"] is True or layer["grad_carried"] is True for layer in after["layers"])
    bce, mse = ({layer["name"]: layer["grad"] for layer in reports[loss]["layers"]} for loss in reports)
    assert bce["dense_1"]["max_abs"] != mse["dense_1"]["max_abs"]  # the loss really is the one asked for


def test_labels_for_another_number_of_outputs_are_refused_naming_both_counts(envs, tmp_path):
    import numpy as np

    labels = tmp_path / "y.npy"
    np.save(labels, np.zeros((4, 1), np.float32))
    result = subprocess.run([sys.executable, "-m", "kdiff", *map(str, legacy("k2_imdb_cnn")), "--labels", str(labels),
                             "--labels", str(labels), "--loss", "mse"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 2
    assert "needs one label file per model output: the model has 1, 2 given" in result.stderr
