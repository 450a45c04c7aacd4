"""kdiff train's joint fits and proofs (#16 item 3), on synthetic steps: several optimizer
differences at once (Keras 2.3.1's Adagrad against Keras 3's: the learning rate, the accumulator's
start, epsilon outside or inside the square root) are each named, none makes the updates agree
alone, and together they are proven (each ``proven_together_with`` the others); a side whose step
cannot tell its epsilon placement (Keras 3's accumulator starts at 0.1) has it told by a probe
re-run with a larger epsilon; sides that agree stay silent. SGD's Nesterov form and Adamax are
solved too. Fast: numpy only."""
import numpy as np
import pytest

from kdiff.diagnosis.model import ErrorSize
from kdiff.train import explain
from kdiff.train.fitting import (EPSILON_INSIDE, EPSILON_OUTSIDE, MOMENTUM_NESTEROV, MOMENTUM_PLAIN, WeightStep,
                                 fit_step, formula_from_probe, needs_probe, probe_epsilon)

KERAS2 = {"learning_rate": 0.01, "initial_accumulator_value": 0.0, "epsilon": 1e-7, "formula": EPSILON_OUTSIDE}
KERAS3 = {"learning_rate": 0.001, "initial_accumulator_value": 0.1, "epsilon": 1e-7, "formula": EPSILON_INSIDE}


def gradient(seed=0, size=600):
    rng = np.random.RandomState(seed)   # magnitudes over 1e-6 .. 1e-1, as a real step's
    return (rng.standard_normal(size) * 10.0 ** rng.uniform(-6, -1, size)).astype(np.float32)


def adagrad_step(g, settings):
    """One first Adagrad step in float32: (WeightStep, update)."""
    v0 = np.full(g.shape, settings["initial_accumulator_value"], np.float32)
    v = v0 + g * g
    lr, eps = np.float32(settings["learning_rate"]), np.float32(settings["epsilon"])
    denominator = np.sqrt(v) + eps if settings["formula"] == EPSILON_OUTSIDE else np.sqrt(v + eps)
    update = (-lr * g / denominator).astype(np.float32)
    return WeightStep(g, {"v": v0}, {"v": v}, update), update


def trial_of(g, b_settings, calls):
    """Side B's step re-run with overrides (and Keras 2's formula), as the Keras 3 worker does."""
    def trial(overrides, formula, layers):
        calls.append((dict(overrides), formula))
        settings = {**b_settings, **overrides, **({"formula": EPSILON_OUTSIDE} if formula == "keras2" else {})}
        return adagrad_step(g, settings)[1]
    return trial


def error_against(a_update):
    def update_error(b_update):
        error = np.abs(b_update.astype(np.float64) - a_update)
        scale = float(np.max(np.abs(a_update)))
        return ErrorSize(float(error.max()), float(error.max()) / scale), bool(error.max() <= 1e-5 * scale)
    return update_error


def fits_and_candidates(a_settings, b_settings, g):
    step_a, update_a = adagrad_step(g, a_settings)
    step_b, _ = adagrad_step(g, b_settings)
    fit_a = fit_step("Adagrad", [step_a], 0, {"learning_rate": a_settings["learning_rate"], "epsilon": 1e-7})
    fit_b = fit_step("Adagrad", [step_b], 0, {"learning_rate": b_settings["learning_rate"], "epsilon": 1e-7})
    for name, fit, step, settings in (("a", fit_a, step_a, a_settings), ("b", fit_b, step_b, b_settings)):
        if needs_probe(fit):
            epsilon = probe_epsilon([step])
            probe = adagrad_step(g, {**settings, "epsilon": epsilon})[1]
            if name == "a":
                fit_a = formula_from_probe(fit, [step], [probe], epsilon)
            else:
                fit_b = formula_from_probe(fit, [step], [probe], epsilon)
    return fit_a, fit_b, update_a


def test_keras3_adagrad_formula_is_told_by_a_probe_where_its_step_cannot():
    g = gradient()
    step_b, _ = adagrad_step(g, KERAS3)
    fit = fit_step("Adagrad", [step_b], 0, {"learning_rate": 0.001, "epsilon": 1e-7})
    assert needs_probe(fit) and fit.assumed == ("epsilon",)       # ε = 1e-7 next to v >= 0.1
    epsilon = probe_epsilon([step_b])
    assert epsilon == pytest.approx(0.1, rel=0.05)
    probed = formula_from_probe(fit, [step_b], [adagrad_step(g, {**KERAS3, "epsilon": epsilon})[1]], epsilon)
    assert probed.formula == EPSILON_INSIDE and probed.probe["formula"] == EPSILON_INSIDE
    assert probed.values["learning_rate"] == pytest.approx(0.001, rel=1e-4)
    # the Keras 2 formula on the same probe: told as such
    probed = formula_from_probe(fit, [step_b], [adagrad_step(g, {**KERAS3, "formula": EPSILON_OUTSIDE,
                                                                  "epsilon": epsilon})[1]], epsilon)
    assert probed.formula == EPSILON_OUTSIDE
    assert probed.to_json()["formula_probe"]["epsilon"] == epsilon


def test_three_adagrad_differences_are_named_and_proven_together():
    g = gradient()
    fit_a, fit_b, update_a = fits_and_candidates(KERAS2, KERAS3, g)
    assert (fit_a.formula, fit_b.formula) == (EPSILON_OUTSIDE, EPSILON_INSIDE)
    found = explain.candidates(fit_a, fit_b, {"learning_rate": 0.01, "epsilon": 1e-7},
                               {"learning_rate": 0.001, "epsilon": 1e-7, "initial_accumulator_value": 0.1})
    causes = {c.cause: c for c in found}
    assert set(causes) == {"optimizer-formula", "optimizer-initial-accumulator", "optimizer-learning-rate"}
    assert causes["optimizer-learning-rate"].override == {"learning_rate": 0.01}
    assert causes["optimizer-initial-accumulator"].override == {"initial_accumulator_value": 0.0}
    calls = []
    before = error_against(update_a)(adagrad_step(g, KERAS3)[1])[0]
    findings = explain.prove(found, trial_of(g, KERAS3, calls), error_against(update_a), before, "dense_1/kernel",
                             0, ("theano", "tensorflow"), "Adagrad")
    assert len(findings) == 3 and all(f.verified for f in findings)
    for finding in findings:
        others = sorted(set(causes) - {finding.cause})
        assert sorted(finding.detail["proven_together_with"]) == others
        assert finding.detail["alone"]["matches"] is False        # alone, none makes the updates agree
        assert finding.detail["rerun_with"] == {"learning_rate": 0.01, "initial_accumulator_value": 0.0,
                                                "formula": "keras2"}
        assert finding.after.max_rel < 1e-5 < 1e-1 < finding.before.max_rel
        last = finding.code.splitlines()[-1]    # one optimizer carrying the whole set
        assert last.startswith("optimizer = Keras2Adagrad(") and "learning_rate=0.01" in last
        assert "initial_accumulator_value=0.0" in last and "class Keras2Adagrad" in finding.code
        assert finding.to_json()["proven_together_with"] == finding.detail["proven_together_with"]
    # three alone, the three together, and each one left out once
    assert len(calls) == 3 + 1 + 3


def test_keras1_epsilon_that_keras3_adagrad_cannot_show_joins_the_set():
    # Keras 1.2.2's Adagrad (ε 1e-8) against Keras 3's: side B's ε (1e-7) is invisible next to its
    # accumulator of 0.1, so it is B's declared value; it still joins the candidates (under Keras 1's
    # accumulator from 0 it shows) and the four are proven together
    keras1 = {**KERAS2, "epsilon": 1e-8}
    g = gradient(9)
    fit_a, fit_b, update_a = fits_and_candidates(keras1, KERAS3, g)
    assert "epsilon" in fit_b.assumed and "epsilon" not in fit_a.assumed
    found = explain.candidates(fit_a, fit_b, {"learning_rate": 0.01, "epsilon": 1e-8},
                               {"learning_rate": 0.001, "epsilon": 1e-7, "initial_accumulator_value": 0.1})
    causes = {c.cause: c for c in found}
    assert set(causes) == {"optimizer-formula", "optimizer-initial-accumulator", "optimizer-learning-rate",
                           "optimizer-epsilon"}
    assert causes["optimizer-epsilon"].override == {"epsilon": 1e-8} and causes["optimizer-epsilon"].b_value == 1e-7
    findings = explain.prove(found, trial_of(g, KERAS3, []), error_against(update_a), ErrorSize(1, 1), "w", 0,
                             ("theano", "tensorflow"), "Adagrad")
    assert all(f.verified for f in findings) and all(len(f.detail["proven_together_with"]) == 3 for f in findings)
    (epsilon,) = [f for f in findings if f.cause == "optimizer-epsilon"]
    assert epsilon.detail["declared_not_solved"] == "b" and "side B's declared value" in epsilon.fix
    # without Keras 1's ε the three of Keras 2 leave Keras 1's update apart
    three = [c for c in found if c.cause != "optimizer-epsilon"]
    assert not any(f.verified for f in explain.prove(three, trial_of(g, KERAS3, []), error_against(update_a),
                                                     ErrorSize(1, 1), "w", 0, ("a", "b"), "Adagrad"))


def test_a_set_member_that_is_not_needed_is_dropped():
    # side B differs in the learning rate and the accumulator's start only, but also reports
    # an epsilon that moves nothing (1e-7 against 1.00001e-7): the proof keeps the two that are needed
    g = gradient(1)
    b = {**KERAS2, "learning_rate": 0.001, "initial_accumulator_value": 0.1}
    fit_a, fit_b, update_a = fits_and_candidates(KERAS2, b, g)
    found = explain.candidates(fit_a, fit_b, {}, {})
    found.append(explain.Candidate("optimizer-epsilon", "epsilon", 1.00001e-7, 1e-7, {"epsilon": 1.00001e-7}))
    findings = {f.cause: f for f in explain.prove(found, trial_of(g, b, []), error_against(update_a),
                                                  ErrorSize(1, 1), "w", 0, ("a", "b"), "Adagrad")}
    assert findings["optimizer-learning-rate"].detail["proven_together_with"] == ["optimizer-initial-accumulator"]
    assert findings["optimizer-initial-accumulator"].verified and findings["optimizer-learning-rate"].verified
    assert not findings["optimizer-epsilon"].verified and "proven_together_with" not in findings["optimizer-epsilon"].detail


def test_one_difference_is_proven_alone_without_a_set():
    g = gradient(2)
    b = {**KERAS2, "learning_rate": 0.001}
    fit_a, fit_b, update_a = fits_and_candidates(KERAS2, b, g)
    found = explain.candidates(fit_a, fit_b, {}, {})
    assert [c.cause for c in found] == ["optimizer-learning-rate"]
    calls = []
    (finding,) = explain.prove(found, trial_of(g, b, calls), error_against(update_a), ErrorSize(1, 1), "w", 0,
                               ("a", "b"), "Adagrad")
    assert finding.verified and "proven_together_with" not in finding.detail and len(calls) == 1


@pytest.mark.parametrize("settings", [KERAS2, KERAS3])
def test_sides_that_agree_stay_silent(settings):
    fit_a, fit_b, _ = fits_and_candidates(settings, settings, gradient(3))
    assert fit_a.formula == fit_b.formula == settings["formula"]
    assert explain.candidates(fit_a, fit_b, {}, {}) == []


# ---- SGD's Nesterov form, Adamax -------------------------------------------------------------------
def sgd_step(g, m0, lr, momentum, nesterov):
    m = momentum * m0 - lr * g
    update = momentum * m - lr * g if nesterov else m
    return WeightStep(g, {"momentum": m0}, {"momentum": m}, update)


@pytest.mark.parametrize("first", [True, False])
def test_sgd_nesterov_form_is_solved_and_named(first):
    g = gradient(4).astype(np.float64)
    m0 = np.zeros_like(g) if first else 0.01 * gradient(5).astype(np.float64)
    plain = fit_step("SGD", [sgd_step(g, m0, 0.01, 0.9, False)], 0, {"momentum": 0.9})
    nesterov = fit_step("SGD", [sgd_step(g, m0, 0.01, 0.9, True)], 0, {"momentum": 0.9})
    assert (plain.formula, nesterov.formula) == (MOMENTUM_PLAIN, MOMENTUM_NESTEROV)
    assert nesterov.values["momentum"] == pytest.approx(0.9, rel=1e-6)
    assert nesterov.values["learning_rate"] == pytest.approx(0.01, rel=1e-6)
    (candidate,) = explain.candidates(plain, nesterov, {}, {})
    assert candidate.cause == "optimizer-nesterov" and candidate.override == {"nesterov": False}
    assert explain.candidates(nesterov, nesterov, {}, {}) == []


def test_sgd_without_momentum_names_no_form():
    g = gradient(6).astype(np.float64)
    fit = fit_step("SGD", [sgd_step(g, np.zeros_like(g), 0.01, 0.0, False)], 0, {"momentum": 0.0})
    assert fit.formula == MOMENTUM_PLAIN and fit.values["learning_rate"] == pytest.approx(0.01)


def test_adamax_settings_are_solved():
    g = gradient(7).astype(np.float64)
    rng = np.random.RandomState(8)
    m0, u0 = 0.01 * rng.standard_normal(g.size), 0.05 * rng.random_sample(g.size)
    m, u = 0.9 * m0 + 0.1 * g, np.maximum(0.999 * u0, np.abs(g))
    t = 3
    update = -0.002 / (1 - 0.9 ** t) * m / (u + 1e-7)
    fit = fit_step("Adamax", [WeightStep(g, {"m": m0, "u": u0}, {"m": m, "u": u}, update)], t - 1, {})
    assert fit.values["learning_rate"] == pytest.approx(0.002, rel=1e-6)
    assert fit.values["beta_1"] == pytest.approx(0.9, rel=1e-9) and fit.values["beta_2"] == pytest.approx(0.999)
    assert fit.residual < 1e-9
