"""Naming what differs between the two optimizers at the first diverging step, and proving it.

Each side's step is solved for its settings and formula variant (``fitting.py``); every setting
or formula that differs becomes a candidate. Each candidate is first applied alone on side B by
re-running that step there (``trial_step``: same starting weights, slots and gradients) with
side A's setting, and B's updates are compared with A's again: a candidate that alone brings
every paired update within tolerance is verified by itself. Where several differ at once (Keras
2.3.1's Adagrad against Keras 3's: the learning rate, the accumulator's start and epsilon's
placement), no one of them alone makes the updates agree: the whole set is re-run together, then
each one left out in turn (one that is not needed is dropped), and the findings of the smallest
set that still matches are verified together, each ``proven_together_with`` the others' causes.
BatchNormalization's momentum (``moving_statistics.py``) joins the candidates as a setting of
side B's layer rather than of its optimizer."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from kdiff.diagnosis.model import ErrorSize, Finding
from kdiff.train.fitting import KERAS2_FORMULAS, MOMENTUM_NESTEROV, Fit

# How far two solved values may be apart and still be the same setting (relative)
SAME_VALUE = {"learning_rate": 1e-2, "epsilon": 0.1, "beta_1": 1e-3, "beta_2": 1e-4, "rho": 1e-3,
              "momentum": 1e-3, "initial_accumulator_value": 1e-2}
CAUSES = {"learning_rate": "optimizer-learning-rate", "epsilon": "optimizer-epsilon",
          "initial_accumulator_value": "optimizer-initial-accumulator"}
NESTEROV = "optimizer-nesterov"
DECAY_RATES = ("beta_1", "beta_2", "rho", "momentum")


@dataclass(frozen=True)
class Candidate:
    cause: str
    setting: str              # the config key changed on side B, or "formula"
    a_value: object
    b_value: object
    override: dict            # the change to side B's optimizer config
    formula: str | None = None  # the update formula side B re-runs with ("keras2")
    layers: dict = field(default_factory=dict)   # the change to side B's layers: {B's layer: {setting: value}}
    layer: str | None = None  # side A's layer the finding is about (None: the diverging weight)
    extra: dict = field(default_factory=dict)    # more of the finding's detail


ITERATION_OFFSET = "optimizer-iteration-offset"

def candidates(fit_a: Fit, fit_b: Fit, declared_a: dict, declared_b: dict) -> list[Candidate]:
    """What differs between the two solved steps: the formula first, then each setting."""
    found = []
    if fit_a.formula and fit_b.formula and fit_a.formula != fit_b.formula and fit_a.optimizer == "SGD":
        # the momentum form is a setting every Keras takes
        found.append(Candidate(NESTEROV, "nesterov", fit_a.formula == MOMENTUM_NESTEROV,
                               fit_b.formula == MOMENTUM_NESTEROV, {"nesterov": fit_a.formula == MOMENTUM_NESTEROV}))
    elif fit_a.formula and fit_b.formula and fit_a.formula != fit_b.formula:
        found.append(Candidate("optimizer-formula", "formula", fit_a.formula, fit_b.formula, {},
                               "keras2" if fit_a.formula in KERAS2_FORMULAS else None))
    if fit_a.step and fit_b.step and fit_a.step != fit_b.step:
        # each side's solved t; side B re-runs with side A's iteration count before the step
        found.append(Candidate(ITERATION_OFFSET, "t", fit_a.step, fit_b.step, {"iterations": fit_a.step - 1},
                               extra={"t_counter": {"a": fit_a.counter_step or fit_a.step,
                                                    "b": fit_b.counter_step or fit_b.step}}))
    for setting, a_value in fit_a.values.items():
        b_value = fit_b.values.get(setting)
        assumed = [side for side, fit in (("a", fit_a), ("b", fit_b)) if setting in fit.assumed]
        if b_value is None or len(assumed) == 2 or _same(setting, a_value, b_value):
            continue
        # A's declared value, where its solved value confirms it: 1e-08 rather than 1.0000021e-08
        value = declared_a.get(setting) if _same(setting, a_value, declared_a.get(setting)) else a_value
        cause = CAUSES.get(setting, "optimizer-decay-rate" if setting in DECAY_RATES else "optimizer-formula")
        # a setting one side's step cannot show (Keras 3 Adagrad's epsilon next to an accumulator that
        # starts at 0.1) is that side's declared value: a candidate all the same, as it may show once
        # another candidate changes the step (Keras 1's epsilon 1e-8 against an accumulator from 0)
        found.append(Candidate(cause, setting, a_value, b_value, {setting: _round(value)},
                               extra={"declared_not_solved": assumed[0]} if assumed else {}))
    return found


def prove(candidates_found: list[Candidate], trial, update_error, before: ErrorSize, weight: str,
          step: int, sides: tuple[str, str], optimizer: str) -> list[Finding]:
    """Re-run the step on side B with each candidate alone; where that leaves some unproven and
    there are several, with the whole set together and then each one left out in turn.

    ``trial(overrides, formula, layers)`` returns B's updates; ``update_error(updates)`` their
    error against A's as (ErrorSize, all within tolerance)."""
    runnable = [c for c in candidates_found if not (c.setting == "formula" and c.formula is None)]

    def run(chosen: list[Candidate]) -> tuple:
        overrides, formula, layers = {}, None, {}
        for candidate in chosen:
            overrides.update(candidate.override)
            for layer, settings in candidate.layers.items():
                layers[layer] = {**layers.get(layer, {}), **settings}
            formula = candidate.formula or formula
        return update_error(trial(overrides, formula, layers))

    alone = {id(c): run([c]) for c in runnable}
    together, joint = [], None
    if len(runnable) > 1 and not all(matches for _, matches in alone.values()):
        joint = run(runnable)
        if joint[1]:
            together = list(runnable)
            for candidate in list(together):       # leave each out: a candidate not needed is dropped
                rest = [c for c in together if c is not candidate]
                if rest and not (len(rest) == 1 and alone[id(rest[0])][1]):
                    result = run(rest)
                    if result[1]:
                        together, joint = rest, result
                elif rest:
                    together, joint = rest, alone[id(rest[0])]
            if len(together) < 2:
                together = []    # a single candidate was enough: proven alone above
    findings = []
    for candidate in candidates_found:
        detail = {"step": step, "setting": candidate.setting, "a": candidate.a_value, "b": candidate.b_value,
                  **candidate.extra}
        if id(candidate) not in alone:         # side B cannot run side A's formula
            after, verified, rerun = None, False, dict(candidate.override)
            detail.update(rerun_with=rerun, matches_after=False)
        elif any(c is candidate for c in together):
            after, verified = joint[0], True
            rerun = {}
            for other in together:
                rerun.update(_rerun_of(other))
            detail.update(rerun_with=rerun, matches_after=True,
                          proven_together_with=[c.cause for c in together if c is not candidate],
                          alone={"after": alone[id(candidate)][0].to_json(), "matches": alone[id(candidate)][1]})
        else:
            after, verified = alone[id(candidate)]
            detail.update(rerun_with=_rerun_of(candidate), matches_after=verified)
            if joint is not None and not verified and not together:
                detail["together"] = {"after": joint[0].to_json(), "matches": joint[1],
                                      "with": [c.cause for c in runnable]}
        code = _code_together(together, optimizer) if any(c is candidate for c in together) else None
        findings.append(Finding(cause=candidate.cause, layer=candidate.layer or weight, verified=verified,
                                before=before, after=after, fix=_fix(candidate, sides),
                                code=code or _code(candidate, optimizer), detail=detail))
    return findings


def _rerun_of(candidate: Candidate) -> dict:
    rerun = {**candidate.override, **({"formula": candidate.formula} if candidate.formula else {})}
    for settings in candidate.layers.values():
        rerun.update(settings)
    return rerun


def _code_together(together: list[Candidate], optimizer: str) -> str | None:
    """The one optimizer that carries every setting of a set proven together (side B's)."""
    if any(c.layers or c.cause == ITERATION_OFFSET for c in together):
        return None
    settings = ", ".join(f"{key}={value!r}" for c in together for key, value in c.override.items())
    formula = next((c for c in together if c.setting == "formula"), None)
    if formula is None:
        return f"optimizer = keras.optimizers.{optimizer}({settings})"
    return _code(formula, optimizer) + f"\n\noptimizer = Keras2{optimizer}({settings})"


def _same(setting: str, a, b) -> bool:
    if not isinstance(a, (int, float)) or not isinstance(b, (int, float)):
        return False
    if not (math.isfinite(a) and math.isfinite(b)):
        return False
    return abs(a - b) <= SAME_VALUE.get(setting, 1e-2) * max(abs(a), abs(b))


def _round(value):
    return float(f"{value:.6g}") if isinstance(value, float) else value


def _fix(candidate: Candidate, sides: tuple[str, str]) -> str:
    a, b = sides
    if candidate.cause == ITERATION_OFFSET:
        return (f"Side A ({a}) took this step as Adam's step t={candidate.a_value}, side B ({b}) as t={candidate.b_value} "
                f"(solved from each side's bias-corrected step size): side B's optimizer starts at another iteration "
                f"count (a resumed optimizer state, or Keras 2 on TensorFlow's unordered counter update). Start side "
                f"B's optimizer at iterations={candidate.override['iterations']}.")
    if candidate.layers:
        layer, settings = next(iter(candidate.layers.items()))
        return (f"Side A's ({a}) {candidate.layer} keeps {_round(candidate.a_value):g} of its old moving statistics per "
                f"step, side B's ({b}) {layer} {_round(candidate.b_value):g} (solved from each side's moving-mean "
                f"update): set momentum={settings['momentum']:g} on side B's layer. Keras's momentum weighs the old "
                f"value, PyTorch's the new batch: PyTorch momentum p is Keras momentum 1 - p."
                + _variance_fix(candidate.extra.get("variance")))
    if isinstance(candidate.a_value, bool):
        return (f"Side A ({a}) steps with {candidate.setting}={candidate.a_value}, side B ({b}) with "
                f"{candidate.setting}={candidate.b_value} (told by each side's update from its momentum slot): "
                f"set {candidate.setting}={candidate.override[candidate.setting]} in side B's optimizer.")
    if candidate.setting == "formula":
        return (f"The two optimizers compute the step differently: side A ({a}) {candidate.a_value}, side B ({b}) "
                f"{candidate.b_value}. Use side A's formula on side B (a subclass, below) or accept the difference.")
    declared = candidate.extra.get("declared_not_solved")
    source = (f"side {declared.upper()}'s declared value, which its step does not show; the other solved from its "
              "update" if declared else "solved from each side's update")
    return (f"Side A ({a}) steps with {candidate.setting} {_round(candidate.a_value):g}, side B ({b}) with "
            f"{_round(candidate.b_value):g} ({source}): set "
            f"{candidate.setting}={candidate.override[candidate.setting]:g} in side B's optimizer.")


def _variance_fix(variance: dict | None) -> str:
    if not variance:
        return ""
    return (f" The moving variances differ apart from the momentum: side A's follows the {variance['a']}, side "
            f"B's the {variance['b']} (a difference of the frameworks, not a setting; the re-run judges the "
            f"moving means).")


def _code(candidate: Candidate, optimizer: str) -> str:
    if candidate.cause == ITERATION_OFFSET:
        return (f"optimizer = keras.optimizers.{optimizer}(...)\noptimizer.build(model.trainable_variables)\n"
                f"optimizer.iterations.assign({candidate.override['iterations']})")
    if candidate.layers:
        layer, settings = next(iter(candidate.layers.items()))
        return (f"model.get_layer({layer!r}).momentum = {settings['momentum']!r}  "
                f"# or BatchNormalization(momentum={settings['momentum']!r}) where it is built")
    if candidate.setting == "formula":
        if candidate.formula != "keras2":
            return "# side B has no other formula kdiff can run"
        if optimizer == "Adagrad":
            return ("class Keras2Adagrad(keras.optimizers.Adagrad):\n"
                    "    def update_step(self, gradient, variable, learning_rate):\n"
                    "        v = self._accumulators[self._get_variable_index(variable)]\n"
                    "        self.assign_add(v, keras.ops.square(gradient))\n"
                    "        self.assign_sub(variable, learning_rate * gradient / (keras.ops.sqrt(v) + self.epsilon))")
        if optimizer == "Nadam":
            return ("class Keras2Nadam(keras.optimizers.Nadam):  # Keras 1/2's momentum schedule, 0.96^(0.004·t)\n"
                    "    def _mu(self, t):\n"
                    "        return self.beta_1 * (1.0 - 0.5 * keras.ops.power(0.96, t * 0.004))\n"
                    "\n"
                    "    def _backend_update_step(self, grads, trainable_variables, learning_rate):\n"
                    "        t = keras.ops.cast(self.iterations + 1, self._u_product.dtype)\n"
                    "        self.assign(self._u_product, self._u_product * self._mu(t))\n"
                    "        super(keras.optimizers.Nadam, self)._backend_update_step(grads, trainable_variables,\n"
                    "                                                                 learning_rate)\n"
                    "\n"
                    "    def update_step(self, gradient, variable, learning_rate):\n"
                    "        t = keras.ops.cast(self.iterations + 1, variable.dtype)\n"
                    "        u_t, u_next, product = self._mu(t), self._mu(t + 1), self._u_product\n"
                    "        # β₁, β₂ in float32, as Keras computes 1 - β (float64's 1 - 0.999 is 1.3e-5 away)\n"
                    "        beta_1, beta_2 = (keras.ops.cast(b, variable.dtype) for b in (self.beta_1, self.beta_2))\n"
                    "        index = self._get_variable_index(variable)\n"
                    "        m, v = self._momentums[index], self._velocities[index]\n"
                    "        self.assign_add(m, (gradient - m) * (1 - beta_1))\n"
                    "        self.assign_add(v, (keras.ops.square(gradient) - v) * (1 - beta_2))\n"
                    "        m_hat = u_next * m / (1 - product * u_next) + (1 - u_t) * gradient / (1 - product)\n"
                    "        v_hat = v / (1 - keras.ops.power(beta_2, t))\n"
                    "        self.assign_sub(variable, m_hat * learning_rate / (keras.ops.sqrt(v_hat) + self.epsilon))")
        return ("class Keras2RMSprop(keras.optimizers.RMSprop):\n"
                "    def update_step(self, gradient, variable, learning_rate):\n"
                "        v = self._velocities[self._get_variable_index(variable)]\n"
                "        self.assign(v, self.rho * v + (1 - self.rho) * keras.ops.square(gradient))\n"
                "        self.assign_sub(variable, learning_rate * gradient / (keras.ops.sqrt(v) + self.epsilon))")
    return f"optimizer = keras.optimizers.{optimizer}({candidate.setting}={candidate.override[candidate.setting]!r})"


def declared_values(config: dict) -> dict:
    """The numeric settings of a side's optimizer config."""
    return {key: float(value) for key, value in config.items()
            if isinstance(value, (int, float)) and not isinstance(value, bool)}


def update_arrays_error(pairs, a_updates: list[np.ndarray], b_updates: list[np.ndarray], compare) -> tuple:
    """(ErrorSize of the worst paired weight, whether all paired weights match)."""
    worst_abs = worst_rel = 0.0
    all_match = True
    for pair in pairs:
        metrics = compare(pair.element_map(a_updates[pair.a_index]), b_updates[pair.b_index])
        worst_abs, worst_rel = max(worst_abs, metrics.max_abs), max(worst_rel, metrics.max_rel)
        all_match &= metrics.matches
    return ErrorSize(worst_abs, worst_rel), all_match
