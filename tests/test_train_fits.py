"""kdiff train: the settings solved from a step beyond the optimizer's own — BatchNormalization's
momentum (from how the moving mean moved) and Adam's step number t (an optimizer that starts at
another iteration count) — each named with both sides' values and proven by re-running the step
on side B with side A's setting. Real workers, real Keras 2.3.1 files."""
import json
import subprocess
import sys

import numpy as np
import pytest

from kdiff.train.fitting import WeightStep, fit_step
from tests.conftest import FIXTURES, fixture_dir

pytestmark = pytest.mark.slow

BN = "k2_bn_dropout_functional"      # conv, BatchNormalization (momentum 0.99), Dropout, ... softmax over 5
VGG = "k2_vgg_channels_first"


@pytest.fixture(scope="module")
def envs(env_python):
    for name in ("theano", "tensorflow", "jax"):
        env_python(name)


def kdiff_train(tmp_path, fixture, *options, files=None):
    """``files``: per-side model files (--a/--b BACKEND:MODEL,WEIGHTS name them), else the fixture's."""
    folder, data = fixture_dir(fixture), FIXTURES / "train"
    model = [] if files else [folder / "model.json", folder / "weights.h5"]
    out = tmp_path / "train.json"
    result = subprocess.run([sys.executable, "-m", "kdiff", "train", *model, data / f"{fixture}_x.npy",
                             data / f"{fixture}_y.npy", "--loss", "categorical_crossentropy", "--batch-size", "4",
                             "--json", out, *options], capture_output=True, text=True, timeout=600)
    assert result.returncode in (0, 1), result.stdout + result.stderr
    return json.loads(out.read_text()), result


def with_momentum(tmp_path, momentum: float):
    """A copy of the BN fixture's model.json whose BatchNormalization has another momentum."""
    config = json.loads((fixture_dir(BN) / "model.json").read_text())
    for layer in config["config"]["layers"]:
        if layer["class_name"] == "BatchNormalization":
            layer["config"]["momentum"] = momentum
    path = tmp_path / "model_momentum.json"
    path.write_text(json.dumps(config))
    return path


def findings_of(report, cause):
    return [finding for finding in report["findings"] if finding["cause"] == cause]


# ---- batchnorm-momentum ---------------------------------------------------------------------
def test_batchnorm_momentum_copied_from_pytorch_is_named_with_both_values(envs, tmp_path):
    # side B's BatchNormalization got PyTorch's 0.1 the Keras way round: Keras momentum 0.9
    folder = fixture_dir(BN)
    a = f"tensorflow:{folder / 'model.json'},{folder / 'weights.h5'}"
    b = f"jax:{with_momentum(tmp_path, 0.9)},{folder / 'weights.h5'}"
    report, result = kdiff_train(tmp_path, BN, "--a", a, "--b", b, "--optimizer", "sgd", "--steps", "2", files=True)
    assert report["first_divergence"] == {"step": 0, "weight": "batch_normalization_1/moving_mean"}
    (finding,) = findings_of(report, "batchnorm-momentum")
    assert finding["layer"] == "batch_normalization_1" and finding["verified"] is True
    assert finding["a"] == pytest.approx(0.99, abs=1e-5) and finding["b"] == pytest.approx(0.9, abs=1e-5)
    assert finding["rerun_with"] == {"momentum": 0.99}
    assert finding["before"]["max_rel"] > 0.5 and finding["after"]["max_rel"] < 1e-4
    assert "variance" not in finding     # both Keras 3: the same (biased) batch variance
    assert [f for f in report["findings"] if f["cause"].startswith("optimizer-")] == []
    moving = {side: fits[0]["momentum"] for side, fits in report["moving_statistics"].items()}
    assert moving == {"a": pytest.approx(0.99, abs=1e-5), "b": pytest.approx(0.9, abs=1e-5)}
    assert "batchnorm-momentum" in result.stdout


def test_batchnorm_momentum_is_proven_on_theano_apart_from_its_variance_form(envs, tmp_path):
    # side B: Keras 2.3.1 on Theano with momentum 0.9; its moving variance also follows the
    # unbiased batch variance (+ε): named in the finding, not taken for the momentum
    folder = fixture_dir(BN)
    a = f"tensorflow:{folder / 'model.json'},{folder / 'weights.h5'}"
    b = f"theano:{with_momentum(tmp_path, 0.9)},{folder / 'weights.h5'}"
    report, _ = kdiff_train(tmp_path, BN, "--a", a, "--b", b, "--optimizer", "sgd", "--steps", "1", files=True)
    (finding,) = findings_of(report, "batchnorm-momentum")
    assert finding["a"] == pytest.approx(0.99, abs=1e-5) and finding["b"] == pytest.approx(0.9, abs=1e-5)
    assert finding["verified"] is True and finding["after"]["max_rel"] < 1e-4 < 0.5 < finding["before"]["max_rel"]
    assert finding["variance"]["a"].startswith("biased") and finding["variance"]["b"].startswith("unbiased")


def test_identical_batchnorm_layers_stay_silent_while_their_statistics_move(envs, tmp_path):
    report, _ = kdiff_train(tmp_path, BN, "--a", "tensorflow", "--b", "jax", "--optimizer", "sgd", "--steps", "2")
    assert report["first_divergence"] is None and findings_of(report, "batchnorm-momentum") == []
    for step in report["steps"]:
        assert step["diverged_weights"] == []
        assert step["loss_a"] == pytest.approx(step["loss_b"], rel=1e-4)
    # the moving statistics did move: step 1 runs (in inference mode) with step 0's updated statistics
    assert report["steps"][0]["loss_a"] != pytest.approx(report["steps"][1]["loss_a"], rel=1e-3)


def test_keras2_unbiased_moving_variance_is_not_called_a_momentum(envs, tmp_path):
    # Keras 2.3.1 on Theano moves the variance towards the unbiased batch variance (+ε), Keras 3
    # towards the biased one: the moving variances diverge, the momenta (solved from the mean) agree
    report, _ = kdiff_train(tmp_path, BN, "--a", "theano", "--b", "tensorflow", "--optimizer", "sgd", "--steps", "1")
    assert report["first_divergence"] == {"step": 0, "weight": "batch_normalization_1/moving_variance"}
    assert findings_of(report, "batchnorm-momentum") == []
    fits = {side: fits[0] for side, fits in report["moving_statistics"].items()}
    assert fits["a"]["momentum"] == pytest.approx(0.99, abs=1e-5) == fits["b"]["momentum"]
    assert fits["a"]["variance"].startswith("unbiased") and fits["b"]["variance"].startswith("biased")
    assert any("moving variance moved towards the unbiased" in note for note in report["notes"])


# ---- optimizer-iteration-offset ---------------------------------------------------------------
def test_adam_resumed_at_another_iteration_is_named_with_both_step_numbers(envs, tmp_path):
    report, result = kdiff_train(tmp_path, VGG, "--a", "theano", "--b", "tensorflow", "--optimizer", "adam",
                                 "--b-optimizer", "adam:iterations=5", "--steps", "1")
    (finding,) = [f for f in report["findings"] if f["cause"].startswith("optimizer-")]
    assert finding["cause"] == "optimizer-iteration-offset" and finding["verified"] is True
    assert (finding["a"], finding["b"]) == (1, 6) and finding["rerun_with"] == {"iterations": 0}
    assert finding["before"]["max_rel"] > 0.1 and finding["after"]["max_rel"] < 1e-4
    assert {side: fit["t"] for side, fit in report["fits"].items()} == {"a": 1, "b": 6}
    # t, not the learning rate: both sides' solved rates stay the declared 1e-3
    assert all(fit["values"]["learning_rate"] == pytest.approx(1e-3, rel=1e-3) for fit in report["fits"].values())
    assert "optimizer-iteration-offset at step 0" in result.stdout


def test_theano_optimizer_takes_an_iteration_count_too(envs, tmp_path):
    # Keras 2.3.1's Adam keeps `iterations` as a variable: pinned on side A (theano), proven on side B
    report, _ = kdiff_train(tmp_path, VGG, "--a", "theano", "--b", "tensorflow", "--optimizer", "adam",
                            "--a-optimizer", "adam:iterations=5", "--steps", "1")
    (finding,) = [f for f in report["findings"] if f["cause"].startswith("optimizer-")]
    assert finding["cause"] == "optimizer-iteration-offset" and finding["verified"] is True
    assert (finding["a"], finding["b"]) == (6, 1) and finding["rerun_with"] == {"iterations": 5}


def test_bad_iteration_count_is_refused_before_anything_starts(tmp_path):
    result = subprocess.run([sys.executable, "-m", "kdiff", "train", "m.json", "w.h5", "x.npy", "y.npy", "--loss",
                             "mse", "--optimizer", "adam", "--b-optimizer", "adam:iterations=-2"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "iterations=-2 is not a step count" in result.stderr + result.stdout


def test_adam_step_number_is_solved_where_the_counter_does_not_tell_it():
    # one Adam step (Keras 3's formula, float32) taken at t=6 while the counter says t=1, as with
    # Keras 2 on TensorFlow's unordered counter update: t is solved, the learning rate stays 1e-3
    rng = np.random.RandomState(5)
    g, m0 = rng.standard_normal(400), 0.1 * rng.standard_normal(400)
    v0 = 0.01 * rng.random_sample(400)
    m, v = 0.9 * m0 + 0.1 * g, 0.999 * v0 + 0.001 * g * g
    alpha = 1e-3 * np.sqrt(1 - 0.999 ** 6) / (1 - 0.9 ** 6)
    update = -alpha * m / (np.sqrt(v) + 1e-7)
    step = WeightStep(*(a.astype(np.float32) for a in (g,)), {"m": m0.astype(np.float32), "v": v0.astype(np.float32)},
                      {"m": m.astype(np.float32), "v": v.astype(np.float32)}, update.astype(np.float32))
    fit = fit_step("Adam", [step], 0, {"learning_rate": 1e-3, "epsilon": 1e-7})
    assert (fit.step, fit.counter_step) == (6, 1)
    assert fit.values["learning_rate"] == pytest.approx(1e-3, rel=1e-4)
