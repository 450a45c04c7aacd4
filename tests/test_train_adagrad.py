"""kdiff train's joint proof on real optimizers (#16 item 3): Keras 2.3.1's Adagrad on Theano against
Keras 3's on TensorFlow differs three ways at once — the learning rate (0.01 vs 0.001), the
accumulator's start (0 vs 0.1) and epsilon outside or inside the square root — and no one of them
alone makes the updates agree: all three are named with both values and proven together (each
``proven_together_with`` the other two). Keras 1.2.2's adds its epsilon (1e-8), which side B's step
cannot show (its own is invisible next to an accumulator of 0.1): it joins as B's declared value and
the four are proven together. With the learning rate and the accumulator pinned to Keras
2's, the placement is left and proven alone; with everything pinned so the two steps are one (an
epsilon far below g², where √(v + ε) and √v + ε are the same number), kdiff stays silent. Real
workers, real Keras 2.3.1 and 1.2.2 files (k2_vgg_channels_first, k1_th_cnn: Theano-flipped convs, then Dense)."""
import json
import subprocess
import sys

import pytest

from tests.conftest import FIXTURES, fixture_dir

pytestmark = pytest.mark.slow

FIXTURE = "k2_vgg_channels_first"
KERAS2 = "lr·g / (√v + ε)  (Keras 1/2)"
KERAS3 = "lr·g / √(v + ε)  (Keras 3)"
THREE = ["optimizer-formula", "optimizer-initial-accumulator", "optimizer-learning-rate"]


@pytest.fixture(scope="module")
def envs(env_python):
    for name in ("theano", "theano-keras1", "tensorflow"):
        env_python(name)


def kdiff_train(tmp_path, *options, fixture=FIXTURE):
    folder, data = fixture_dir(fixture), FIXTURES / "train"
    out = tmp_path / "train.json"
    result = subprocess.run([sys.executable, "-m", "kdiff", "train", folder / "model.json", folder / "weights.h5",
                             data / f"{fixture}_x.npy", data / f"{fixture}_y.npy", "--loss", "categorical_crossentropy",
                             "--batch-size", "4", "--optimizer", "adagrad", "--json", out, *options],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode in (0, 1), result.stdout + result.stderr
    return json.loads(out.read_text()), result


def optimizer_findings(report):
    return {finding["cause"]: finding for finding in report["findings"] if finding["cause"].startswith("optimizer-")}


def test_keras2_adagrad_against_keras3_three_differences_are_named_and_proven_together(envs, tmp_path):
    report, result = kdiff_train(tmp_path, "--steps", "1")
    assert result.returncode == 1 and report["forward_divergence"] is None   # the flips are proven first
    assert [f["cause"] for f in report["findings"][:3]] == ["conv-kernel-flip"] * 3
    assert report["first_divergence"]["step"] == 0
    # each side's step solved: side B's placement told by its probe (ε = 1e-7 is invisible next to v >= 0.1)
    fits = report["fits"]
    assert (fits["a"]["formula"], fits["b"]["formula"]) == (KERAS2, KERAS3)
    assert "formula_probe" not in fits["a"] and fits["b"]["formula_probe"]["formula"] == KERAS3
    assert fits["b"]["formula_probe"]["epsilon"] == pytest.approx(0.1, rel=0.05)
    findings = optimizer_findings(report)
    assert sorted(findings) == THREE
    values = {cause: (f["a"], f["b"]) for cause, f in findings.items()}
    assert values["optimizer-learning-rate"] == (pytest.approx(0.01, rel=1e-3), pytest.approx(0.001, rel=1e-3))
    assert values["optimizer-initial-accumulator"] == (pytest.approx(0.0, abs=1e-6), pytest.approx(0.1, rel=1e-3))
    assert values["optimizer-formula"] == (KERAS2, KERAS3)
    for cause, finding in findings.items():
        assert finding["verified"] is True and finding["matches_after"] is True
        assert sorted(finding["proven_together_with"]) == sorted(set(THREE) - {cause})
        assert finding["alone"]["matches"] is False and finding["alone"]["after"]["max_rel"] > 0.5
        assert finding["rerun_with"] == {"formula": "keras2", "initial_accumulator_value": 0.0, "learning_rate": 0.01}
        assert finding["before"]["max_rel"] > 0.5 and finding["after"]["max_rel"] < 1e-4
        last = finding["code"].splitlines()[-1]   # one optimizer carrying the whole set
        assert last.startswith("optimizer = Keras2Adagrad(") and "learning_rate=0.01" in last
        assert "initial_accumulator_value=0.0" in last
    assert "verified together with" in result.stdout


def test_keras1_adagrad_adds_an_epsilon_that_keras3_step_cannot_show_and_all_four_are_proven(envs, tmp_path):
    # Keras 1.2.2's ε is 1e-8: side B's (1e-7) is invisible next to its accumulator of 0.1, so it is
    # B's declared value, and the three differences of Keras 2 alone leave the updates apart
    report, _ = kdiff_train(tmp_path, "--steps", "1", fixture="k1_th_cnn")
    four = sorted(THREE + ["optimizer-epsilon"])
    findings = optimizer_findings(report)
    assert sorted(findings) == four
    for cause, finding in findings.items():
        assert finding["verified"] is True and finding["alone"]["matches"] is False
        assert sorted(finding["proven_together_with"]) == sorted(set(four) - {cause})
        assert finding["rerun_with"] == {"formula": "keras2", "initial_accumulator_value": 0.0, "learning_rate": 0.01,
                                         "epsilon": 1e-8}
        assert finding["after"]["max_rel"] < 1e-4
    epsilon = findings["optimizer-epsilon"]
    assert epsilon["a"] == pytest.approx(1e-8, rel=0.05) and epsilon["b"] == 1e-7
    assert epsilon["declared_not_solved"] == "b" and "epsilon" in report["fits"]["b"]["assumed"]


def test_with_keras2_rate_and_accumulator_pinned_the_placement_is_left_and_proven_alone(envs, tmp_path):
    report, _ = kdiff_train(tmp_path, "--steps", "1", "--b-optimizer",
                            "adagrad:learning_rate=0.01,initial_accumulator_value=0")
    (finding,) = optimizer_findings(report).values()
    assert finding["cause"] == "optimizer-formula" and (finding["a"], finding["b"]) == (KERAS2, KERAS3)
    assert finding["verified"] is True and "proven_together_with" not in finding
    assert finding["rerun_with"] == {"formula": "keras2"}
    assert finding["before"]["max_rel"] > 0.5 and finding["after"]["max_rel"] < 1e-4
    # here side B's step tells its placement by itself (v = g², ε visible where |g| is small): no probe
    assert report["fits"]["b"]["formula"] == KERAS3 and "formula_probe" not in report["fits"]["b"]


def test_adagrad_pinned_to_agree_stays_silent_over_several_steps(envs, tmp_path):
    # the placement is no setting: with ε = 1e-30 on both sides (far below any nonzero g²) the two
    # formulas compute the same numbers, and with Keras 2's rate and accumulator on side B the steps agree
    report, result = kdiff_train(tmp_path, "--steps", "3", "--a-optimizer", "adagrad:epsilon=1e-30",
                                 "--b-optimizer", "adagrad:learning_rate=0.01,initial_accumulator_value=0,epsilon=1e-30")
    assert report["first_divergence"] is None and optimizer_findings(report) == {} and report["fits"] == {}
    assert len(report["steps"]) == 3
    for step in report["steps"]:
        assert step["worst_update"]["match"] is True and step["diverged_weights"] == []
        assert step["loss_a"] == pytest.approx(step["loss_b"], rel=1e-4)
    assert "The weight updates agree at every step" in result.stdout
