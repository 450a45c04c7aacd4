"""kdiff train's Nadam solver (#16 item 3), on synthetic steps: the learning rate, β₁, β₂, epsilon
and the momentum schedule (Keras 1/2's μₜ = β₁·(1 - ½·0.96^(0.004·t)) against Keras 3's
β₁·(1 - ½·0.96^t)) are solved from the slots and the update; Keras 2.3.1's Nadam against Keras 3's
(learning rate 0.002 vs 0.001 and the schedule) is named and proven together; Keras 1.2.2's adds
its epsilon (1e-8); sides that agree stay silent. Fast: numpy only."""
import numpy as np
import pytest

from kdiff.diagnosis.model import ErrorSize
from kdiff.train import explain
from kdiff.train.fitting import NADAM_KERAS2, NADAM_KERAS3, WeightStep, fit_step

KERAS1 = {"learning_rate": 0.002, "epsilon": 1e-8, "schedule_decay": 0.004}
KERAS2 = {"learning_rate": 0.002, "epsilon": 1e-7, "schedule_decay": 0.004}
KERAS3 = {"learning_rate": 0.001, "epsilon": 1e-7}
BETA_1, BETA_2 = 0.9, 0.999


def gradient(seed=0, size=600):
    rng = np.random.RandomState(seed)   # magnitudes over 1e-6 .. 1e-1, as a real step's
    return (rng.standard_normal(size) * 10.0 ** rng.uniform(-6, -1, size)).astype(np.float32)


def nadam_steps(gradients, settings):
    """Nadam's steps in float32 as Keras 1/2 (``schedule_decay`` in settings) or Keras 3 compute
    them, from iteration 0: [(WeightStep, update)] per step."""
    decay = np.float32(settings.get("schedule_decay", 1.0))
    lr, eps = np.float32(settings["learning_rate"]), np.float32(settings["epsilon"])
    b1, b2 = np.float32(BETA_1), np.float32(BETA_2)
    m, v = np.zeros_like(gradients[0]), np.zeros_like(gradients[0])
    product, steps = np.float32(1), []
    for t, g in enumerate(gradients, start=1):
        t = np.float32(t)
        mu = b1 * (np.float32(1) - np.float32(0.5) * np.float32(0.96) ** (t * decay))
        mu_next = b1 * (np.float32(1) - np.float32(0.5) * np.float32(0.96) ** ((t + 1) * decay))
        product = product * mu
        m_new, v_new = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g
        m_bar = (1 - mu) * g / (1 - product) + mu_next * m_new / (1 - product * mu_next)
        update = (-lr * m_bar / (np.sqrt(v_new / (1 - b2 ** t)) + eps)).astype(np.float32)
        steps.append((WeightStep(g, {"m": m, "v": v}, {"m": m_new, "v": v_new}, update), update))
        m, v = m_new, v_new
    return steps


def fit_at(settings, declared, count=1, seed=0):
    steps = nadam_steps([gradient(seed + i) for i in range(count)], settings)
    return fit_step("Nadam", [steps[-1][0]], count - 1, declared)


@pytest.mark.parametrize("settings, formula", [(KERAS1, NADAM_KERAS2), (KERAS2, NADAM_KERAS2),
                                               (KERAS3, NADAM_KERAS3)])
def test_first_step_schedule_is_told_by_the_declared_learning_rate(settings, formula):
    fit = fit_at(settings, settings)
    assert fit.formula == formula and fit.step == 1
    assert fit.values["learning_rate"] == pytest.approx(settings["learning_rate"], rel=1e-5)
    assert fit.values["epsilon"] == pytest.approx(settings["epsilon"], rel=0.05) and "epsilon" not in fit.assumed
    assert fit.values["beta_1"] == pytest.approx(BETA_1, rel=1e-5)
    assert fit.values["beta_2"] == pytest.approx(BETA_2, rel=1e-5)
    assert fit.residual < 1e-4
    assert ("schedule_decay" in fit.values) == (formula == NADAM_KERAS2)


def test_first_step_schedule_is_left_unnamed_when_no_learning_rate_matches():
    # at the first step the schedule only scales lr (0.6 % apart): with a declared rate neither gives
    # (something else changed the rate), the schedule is not guessed
    fit = fit_at(KERAS3, {**KERAS3, "learning_rate": 0.005})
    assert fit.formula == "" and "formula" in fit.assumed
    assert fit.values["learning_rate"] == pytest.approx(0.001, rel=1e-5)   # under the declared (Keras 3) schedule


@pytest.mark.parametrize("settings, formula", [(KERAS2, NADAM_KERAS2), (KERAS3, NADAM_KERAS3)])
def test_later_step_schedule_is_solved_from_how_it_weighs_momentum_and_gradient(settings, formula):
    fit = fit_at(settings, {}, count=4)      # nothing declared: the update alone tells the schedule
    assert fit.formula == formula and fit.step == 4
    assert fit.values["learning_rate"] == pytest.approx(settings["learning_rate"], rel=1e-4)
    assert fit.residual < 1e-4


def candidates_of(a, b, count=1):
    steps_a = nadam_steps([gradient(i) for i in range(count)], a)
    steps_b = nadam_steps([gradient(i) for i in range(count)], b)
    fit_a = fit_step("Nadam", [steps_a[-1][0]], count - 1, a)
    fit_b = fit_step("Nadam", [steps_b[-1][0]], count - 1, b)
    return explain.candidates(fit_a, fit_b, a, b), steps_a[-1][1]


def test_keras2_nadam_against_keras3_is_named_and_proven_together():
    found, update_a = candidates_of(KERAS2, KERAS3)
    causes = {c.cause: c for c in found}
    assert set(causes) == {"optimizer-formula", "optimizer-learning-rate"}
    formula = causes["optimizer-formula"]
    assert (formula.a_value, formula.b_value, formula.formula) == (NADAM_KERAS2, NADAM_KERAS3, "keras2")
    assert causes["optimizer-learning-rate"].override == {"learning_rate": 0.002}

    def trial(overrides, formula, layers):     # side B (Keras 3) re-run, with Keras 2's schedule if asked
        settings = {**KERAS3, **overrides, **({"schedule_decay": 0.004} if formula == "keras2" else {})}
        return nadam_steps([gradient(0)], settings)[-1][1]

    def update_error(b_update):
        error = float(np.max(np.abs(b_update.astype(np.float64) - update_a)))
        scale = float(np.max(np.abs(update_a)))
        return ErrorSize(error, error / scale), error <= 1e-5 * scale

    findings = explain.prove(found, trial, update_error, update_error(trial({}, None, {}))[0], "w", 0,
                             ("theano", "tensorflow"), "Nadam")
    assert all(f.verified for f in findings) and len(findings) == 2
    for finding in findings:
        assert finding.detail["alone"]["matches"] is False and len(finding.detail["proven_together_with"]) == 1
        assert finding.detail["rerun_with"] == {"formula": "keras2", "learning_rate": 0.002}
        last = finding.code.splitlines()[-1]
        assert last == "optimizer = Keras2Nadam(learning_rate=0.002)" and "class Keras2Nadam" in finding.code


def test_keras1_nadam_adds_its_epsilon():
    found, _ = candidates_of(KERAS1, KERAS3)
    causes = {c.cause: c for c in found}
    assert set(causes) == {"optimizer-formula", "optimizer-learning-rate", "optimizer-epsilon"}
    assert causes["optimizer-epsilon"].override == {"epsilon": 1e-8}


def test_keras2_against_keras3_past_the_first_step():
    found, _ = candidates_of(KERAS2, KERAS3, count=3)
    assert {c.cause for c in found} == {"optimizer-formula", "optimizer-learning-rate"}


@pytest.mark.parametrize("settings", [KERAS2, KERAS3])
@pytest.mark.parametrize("count", [1, 3])
def test_nadam_sides_that_agree_stay_silent(settings, count):
    found, _ = candidates_of(settings, settings, count)
    assert found == []
