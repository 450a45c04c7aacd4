"""kdiff train: real optimizers of both generations on real Theano-era fixtures, a few steps
each. Each side's update is solved for its settings and every difference is proven by
re-running the step on side B with side A's setting."""
import json
import subprocess
import sys

import pytest

from tests.conftest import FIXTURES, fixture_dir

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def envs(env_python):
    for name in ("theano", "theano-keras1", "tensorflow"):
        env_python(name)


def kdiff_train(tmp_path, fixture, *options):
    folder, data = fixture_dir(fixture), FIXTURES / "train"
    out = tmp_path / "train.json"
    result = subprocess.run([sys.executable, "-m", "kdiff", "train", folder / "model.json", folder / "weights.h5",
                             data / f"{fixture}_x.npy", data / f"{fixture}_y.npy", "--loss", "categorical_crossentropy",
                             "--batch-size", "4", "--json", out, *options], capture_output=True, text=True, timeout=600)
    assert result.returncode in (0, 1), result.stdout + result.stderr
    return json.loads(out.read_text()), result


def optimizer_findings(report):
    return [finding for finding in report["findings"] if finding["cause"].startswith("optimizer-")]


def test_keras1_adam_epsilon_is_named_with_both_values_after_the_conv_flips(envs, tmp_path):
    report, result = kdiff_train(tmp_path, "k1_th_cnn", "--optimizer", "adam", "--steps", "2")
    assert [f["cause"] for f in report["findings"][:2]] == ["conv-kernel-flip", "conv-kernel-flip"]
    assert report["first_divergence"]["step"] == 0
    (finding,) = optimizer_findings(report)
    assert finding["cause"] == "optimizer-epsilon" and finding["verified"] is True
    assert finding["a"] == pytest.approx(1e-8, rel=0.05) and finding["b"] == pytest.approx(1e-7, rel=0.05)
    assert finding["rerun_with"] == {"epsilon": 1e-8}
    assert finding["before"]["max_rel"] > 1e-2 and finding["after"]["max_rel"] < 1e-4
    assert "optimizer-epsilon at step 0" in result.stdout


def test_keras3_rmsprop_formula_is_named_against_keras2(envs, tmp_path):
    report, _ = kdiff_train(tmp_path, "k2_vgg_channels_first", "--optimizer", "rmsprop", "--steps", "1")
    (finding,) = optimizer_findings(report)
    assert finding["cause"] == "optimizer-formula" and finding["verified"] is True
    assert "Keras 1/2" in finding["a"] and "Keras 3" in finding["b"]
    assert finding["after"]["max_rel"] < 1e-4 < 1e-1 < finding["before"]["max_rel"]
    assert {side: fit["values"]["epsilon"] for side, fit in report["fits"].items()} == {
        "a": pytest.approx(1e-7, rel=0.05), "b": pytest.approx(1e-7, rel=0.05)}


def test_adadelta_learning_rate_default_is_named_with_both_rates(envs, tmp_path):
    report, _ = kdiff_train(tmp_path, "k2_vgg_channels_first", "--optimizer", "adadelta", "--steps", "1")
    (finding,) = optimizer_findings(report)
    assert finding["cause"] == "optimizer-learning-rate" and finding["verified"] is True
    assert finding["a"] == pytest.approx(1.0, rel=1e-3) and finding["b"] == pytest.approx(1e-3, rel=1e-3)
    assert finding["rerun_with"] == {"learning_rate": 1.0} and finding["after"]["max_rel"] < 1e-4


def test_adamax_learning_rate_default_is_named_with_both_rates(envs, tmp_path):
    report, _ = kdiff_train(tmp_path, "k2_vgg_channels_first", "--optimizer", "adamax", "--steps", "1")
    (finding,) = optimizer_findings(report)
    assert finding["cause"] == "optimizer-learning-rate" and finding["verified"] is True
    assert finding["a"] == pytest.approx(0.002, rel=1e-3) and finding["b"] == pytest.approx(1e-3, rel=1e-3)
    assert finding["rerun_with"] == {"learning_rate": 0.002} and finding["after"]["max_rel"] < 1e-4


def test_identical_optimizers_stay_silent_over_several_steps(envs, tmp_path):
    # Keras 2.3.1 and Keras 3 share Adam's defaults (epsilon 1e-7 since Keras 2.1.3)
    report, _ = kdiff_train(tmp_path, "k2_vgg_channels_first", "--optimizer", "adam", "--steps", "3")
    assert report["first_divergence"] is None and optimizer_findings(report) == []
    assert len(report["steps"]) == 3
    for step in report["steps"]:
        assert step["worst_update"]["match"] is True and step["diverged_weights"] == []
        assert step["loss_a"] == pytest.approx(step["loss_b"], rel=1e-4)
