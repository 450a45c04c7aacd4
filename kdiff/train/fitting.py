"""Solving one side's step for its optimizer's settings.

Given, for every trainable weight, the gradient the optimizer applied, its slots before and
after and the update it made, each optimizer's update rule is solved for its settings by least
squares over all elements (relative residuals, in float64): the decay rates (β₁, β₂, ρ) from
how the slots moved, then the learning rate and epsilon from the update, for each formula
variant the Keras generations used. A setting whose effect on every element is below float32
resolution cannot be solved for; it is taken from the side's declared config and listed as
``assumed``. Adam's step number t (its bias correction) and learning rate act as one factor in a
single step: t is solved as the step number that turns the declared learning rate into that
factor (the optimizer's own counter's t where it does), so a side whose optimizer starts at
another iteration count shows as another t, not another learning rate."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# A setting is solved for only where it moves some element's update by more than this (relative)
IDENTIFIABLE = 1e-4
# Formula variants: where Keras 1/2 and Keras 3 compute RMSprop's and Adagrad's step differently
EPSILON_OUTSIDE = "lr·g / (√v + ε)  (Keras 1/2)"
EPSILON_INSIDE = "lr·g / √(v + ε)  (Keras 3)"
# SGD's two momentum forms (the same in Keras 1, 2 and 3; ``nesterov`` chooses)
MOMENTUM_PLAIN = "update = m_new = μ·m - lr·g  (nesterov=False)"
MOMENTUM_NESTEROV = "update = μ·m_new - lr·g  (nesterov=True)"
# Nadam's momentum schedule μₜ = β₁·(1 - ½·0.96^(d·t)): Keras 1/2 with schedule_decay d (0.004 by
# default), Keras 3 without it (as d = 1)
NADAM_KERAS2 = "μₜ = β₁·(1 - ½·0.96^(0.004·t))  (Keras 1/2)"
NADAM_KERAS3 = "μₜ = β₁·(1 - ½·0.96^t)  (Keras 3)"
# The formula variants of Keras 1/2 that the Keras 3 worker can re-run a step with ("keras2")
KERAS2_FORMULAS = (EPSILON_OUTSIDE, NADAM_KERAS2)
# The optimizers whose epsilon placement is a variant fitted (and, where one side's step cannot
# tell, probed by re-running that side's step with a larger epsilon: ``formula_from_probe``)
PLACEMENT_VARIANTS = ("RMSprop", "Adagrad")
# How far (relative) the probe's update may be from a variant's and still be that variant, and how
# much worse the other must be
PROBE_MATCH, PROBE_MARGIN = 1e-3, 10.0
# How close (relative) the learning rate solved at a step number t must come to the declared one
STEP_MATCH = 2e-4
# The largest step number searched for
MAX_STEP = 1_000_000


@dataclass(frozen=True)
class WeightStep:
    gradient: np.ndarray
    before: dict            # slot kind -> array
    after: dict
    update: np.ndarray


@dataclass(frozen=True)
class Fit:
    optimizer: str
    values: dict                  # setting -> solved value
    residual: float               # max |update from the solved rule - update| / max |update|
    formula: str = ""             # the variant that fits, where the generations differ
    assumed: tuple = ()           # settings taken from the declared config (not identifiable)
    step: int = 0                 # t, the step number the rule used (solved for Adam, else iterations + 1)
    counter_step: int = 0         # t by the optimizer's own iteration counter (iterations + 1)
    probe: dict | None = None     # how the formula was told where the step alone could not (formula_from_probe)

    def to_json(self) -> dict:
        return {"optimizer": self.optimizer, "values": self.values, "formula": self.formula or None,
                "residual": self.residual, "assumed": list(self.assumed), "t": self.step,
                "t_counter": self.counter_step or self.step, **({"formula_probe": self.probe} if self.probe else {})}


class _Elements:
    """All weights' elements of one step, flattened and in float64."""

    def __init__(self, steps: list[WeightStep]):
        def flat(values):
            return np.concatenate([np.asarray(v, np.float64).ravel() for v in values]) if values else np.zeros(0)

        self.g = flat([s.gradient for s in steps])
        self.update = flat([s.update for s in steps])
        kinds = set.intersection(*(set(s.before) & set(s.after) for s in steps)) if steps else set()
        self.before = {kind: flat([s.before[kind] for s in steps]) for kind in kinds}
        self.after = {kind: flat([s.after[kind] for s in steps]) for kind in kinds}


def fit_step(optimizer: str, steps: list[WeightStep], iterations: int, declared: dict) -> Fit | None:
    """The settings of ``optimizer`` that reproduce this step, or None for an optimizer kdiff
    cannot solve (the comparison of updates still holds)."""
    solver = SOLVERS.get(optimizer)
    if solver is None or not steps:
        return None
    return solver(_Elements(steps), iterations + 1, declared)


# ---- the solvers ------------------------------------------------------------------------
def _adam(e: _Elements, t: int, declared: dict) -> Fit:
    beta_1 = decay_rate(e.after["m"], e.before["m"], e.g)
    beta_2 = decay_rate(e.after["v"], e.before["v"], e.g ** 2)
    m, root_v = e.after["m"], np.sqrt(e.after["v"])
    keep = (e.update != 0) & (m != 0)
    ratio = -m[keep] / e.update[keep]                       # = (√v + ε) / α
    epsilon = declared.get("epsilon", 1e-7)
    if _identifiable(epsilon, root_v[keep]):
        slope, intercept = _lstsq([root_v[keep], np.ones_like(ratio)], ratio)
        alpha, epsilon, assumed = 1 / slope, intercept / slope, ()
    else:
        (slope,) = _lstsq([root_v[keep] + epsilon], ratio)
        alpha, assumed = 1 / slope, ("epsilon",)
    counter_t, t = t, _solve_step(alpha, beta_1, beta_2, t, declared.get("learning_rate"))
    learning_rate = float(_adam_learning_rate(alpha, beta_1, beta_2, t))
    predicted = -alpha * m / (root_v + epsilon)
    return Fit("Adam", {"learning_rate": learning_rate, "beta_1": beta_1, "beta_2": beta_2, "epsilon": epsilon},
               _residual(predicted, e.update), assumed=assumed, step=t, counter_step=counter_t)


def _adam_learning_rate(alpha, beta_1: float, beta_2: float, t):
    """lr from α = lr·√(1 - β₂ᵗ) / (1 - β₁ᵗ), Adam's bias-corrected step size at step t."""
    return alpha * (1 - beta_1 ** t) / np.sqrt(1 - beta_2 ** t)


def _solve_step(alpha: float, beta_1: float, beta_2: float, counter_t: int, declared_lr) -> int:
    """The step number t at which the declared learning rate gives the solved α: the counter's t
    where it does, else the nearest t that does; the counter's where none does (then the
    learning rate itself differs)."""
    if not declared_lr or not (0 < beta_1 < 1 and 0 < beta_2 < 1) or not math.isfinite(alpha):
        return counter_t
    if abs(_adam_learning_rate(alpha, beta_1, beta_2, counter_t) / declared_lr - 1) <= STEP_MATCH:
        return counter_t
    steps = np.arange(1, MAX_STEP + 1, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        misfit = np.abs(_adam_learning_rate(alpha, beta_1, beta_2, steps) / declared_lr - 1)
    matching = steps[misfit <= STEP_MATCH]
    if not matching.size:
        return counter_t
    return int(matching[np.argmin(np.abs(matching - counter_t))])


def _rmsprop(e: _Elements, t: int, declared: dict) -> Fit:
    rho = decay_rate(e.after["v"], e.before["v"], e.g ** 2)
    return _square_root_rule("RMSprop", e, t, declared, {"rho": rho})


def _adagrad(e: _Elements, t: int, declared: dict) -> Fit:
    values = {"initial_accumulator_value": float(np.median(e.before["v"]))} if t == 1 else {}
    return _square_root_rule("Adagrad", e, t, declared, values)


def _square_root_rule(optimizer: str, e: _Elements, t: int, declared: dict, values: dict) -> Fit:
    """update = -lr·g / (√v + ε) or -lr·g / √(v + ε): each variant solved, the closer one kept."""
    v, keep = e.after["v"], (e.update != 0) & (e.g != 0)
    g, update, v = e.g[keep], e.update[keep], v[keep]
    epsilon = declared.get("epsilon", 1e-7)
    fits = {}
    for formula in (EPSILON_OUTSIDE, EPSILON_INSIDE):
        outside = formula == EPSILON_OUTSIDE
        base, target = (np.sqrt(v), -g / update) if outside else (v, (g / update) ** 2)
        if _identifiable(epsilon, base):
            slope, intercept = _lstsq([base, np.ones_like(target)], target)
            fitted_epsilon, assumed = intercept / slope, ()
        else:
            (slope,) = _lstsq([base + epsilon], target)
            fitted_epsilon, assumed = epsilon, ("epsilon",)
        learning_rate = 1 / slope if outside else 1 / math.sqrt(abs(slope))
        denominator = _denominator(formula, v, fitted_epsilon)
        fits[formula] = Fit(optimizer, {**values, "learning_rate": learning_rate, "epsilon": fitted_epsilon},
                            _residual(-learning_rate * g / denominator, update), formula=formula,
                            assumed=assumed, step=t)
    best = min(fits.values(), key=lambda fit: fit.residual)
    if all("epsilon" in fit.assumed for fit in fits.values()):
        best = Fit(best.optimizer, best.values, best.residual, "", best.assumed, t)  # indistinguishable
    return Fit(best.optimizer, best.values, best.residual, best.formula, best.assumed, t)


def needs_probe(fit: Fit | None) -> bool:
    """Whether this side's step cannot tell its epsilon placement (ε is below float32 resolution next
    to v in both variants, e.g. Keras 3's Adagrad with its accumulator starting at 0.1)."""
    return fit is not None and fit.optimizer in PLACEMENT_VARIANTS and not fit.formula


def probe_epsilon(steps: list[WeightStep]) -> float:
    """An epsilon that moves every variant's update well above float32 resolution: the median of v
    after the step (where the gradient is nonzero), so √(v + ε) and √v + ε differ by several %."""
    e = _Elements(steps)
    v = e.after.get("v", np.zeros(0))[(e.g != 0)] if "v" in e.after else np.zeros(0)
    v = v[np.isfinite(v) & (v > 0)]
    return _round_probe(float(np.median(v))) if v.size else 0.1


def _round_probe(value: float) -> float:
    return float(f"{max(value, 1e-6):.2g}")


def formula_from_probe(fit: Fit, steps: list[WeightStep], probe_updates: list, epsilon: float) -> Fit:
    """The side's formula told by its step re-run with ``epsilon``: the slots after the step do not
    depend on ε (RMSprop, Adagrad), the learning rate is the one solved from the step itself (ε had
    no effect there), so each variant predicts the probe's update with nothing left to fit; the one
    within PROBE_MATCH, and PROBE_MARGIN times closer than the other, is the side's formula."""
    e = _Elements(steps)
    update = np.concatenate([np.asarray(u, np.float64).ravel() for u in probe_updates])
    keep = (update != 0) & (e.g != 0)
    g, v, update = e.g[keep], e.after["v"][keep], update[keep]
    learning_rate = fit.values["learning_rate"]
    residuals = {formula: _residual(-learning_rate * g / _denominator(formula, v, epsilon), update)
                 for formula in (EPSILON_OUTSIDE, EPSILON_INSIDE)}
    best, other = sorted(residuals, key=residuals.get)
    probe = {"epsilon": epsilon, "residuals": residuals}
    if residuals[best] <= PROBE_MATCH and residuals[other] >= PROBE_MARGIN * residuals[best]:
        return Fit(fit.optimizer, fit.values, fit.residual, best, fit.assumed, fit.step, fit.counter_step,
                   {**probe, "formula": best})
    return Fit(fit.optimizer, fit.values, fit.residual, fit.formula, fit.assumed, fit.step, fit.counter_step, probe)


def _denominator(formula: str, v: np.ndarray, epsilon: float) -> np.ndarray:
    return np.sqrt(v) + epsilon if formula == EPSILON_OUTSIDE else np.sqrt(np.maximum(v + epsilon, 0))


def _adadelta(e: _Elements, t: int, declared: dict) -> Fit:
    """update = -lr·g·√(d + ε) / √(v_new + ε), with d the accumulated squared updates before the
    step: for each ε (searched on a log scale) lr is a least-squares ratio; the ε that fits best is kept."""
    rho = decay_rate(e.after["v"], e.before["v"], e.g ** 2)
    keep = (e.update != 0) & (e.g != 0)
    g, update, v, d = e.g[keep], e.update[keep], e.after["v"][keep], e.before["delta"][keep]

    def step_of(epsilon: float) -> np.ndarray:
        return -g * np.sqrt(d + epsilon) / np.sqrt(v + epsilon)

    epsilon, assumed = declared.get("epsilon", 1e-7), ("epsilon",)
    if _identifiable(epsilon, v):
        epsilon = _search_log(lambda eps: _relative_misfit(step_of(eps), update), 1e-12, 1e-1)
        assumed = ()
    learning_rate = _ratio(step_of(epsilon), update)
    return Fit("Adadelta", {"learning_rate": learning_rate, "rho": rho, "epsilon": epsilon},
               _residual(learning_rate * step_of(epsilon), update), assumed=assumed, step=t)


def _sgd(e: _Elements, t: int, declared: dict) -> Fit:
    """Without momentum: update = -lr·g. With it, m_new = μ·m - lr·g (the slot after the step) and
    the update is m_new (plain) or μ·m_new - lr·g (Nesterov, the same in every Keras): μ and lr are
    solved from how the slot moved, the form from the update. At the first step (m = 0) μ leaves
    no trace in the slot; the Nesterov update is then (1 + μ)·m_new, which tells μ."""
    m_new = e.after.get("momentum")
    if m_new is None or not np.any(m_new):
        (negative_lr,) = _lstsq([e.g], e.update)
        return Fit("SGD", {"learning_rate": -negative_lr}, _residual(negative_lr * e.g, e.update), step=t)
    m_old = e.before.get("momentum", np.zeros_like(m_new))
    assumed = ()
    if np.any(m_old):
        momentum, negative_lr = _lstsq([m_old, e.g], m_new)
    else:
        (negative_lr,) = _lstsq([e.g], m_new)
        momentum, assumed = declared.get("momentum", 0.0), ("momentum",)
    fits = {MOMENTUM_PLAIN: Fit("SGD", {"learning_rate": -negative_lr, "momentum": momentum},
                                _residual(m_new, e.update), MOMENTUM_PLAIN, assumed, t)}
    if not np.any(m_old):   # update = (1 + μ)·m_new: μ from the update
        (ratio,) = _lstsq([m_new], e.update)
        nesterov_momentum = ratio - 1
        fits[MOMENTUM_NESTEROV] = Fit("SGD", {"learning_rate": -negative_lr, "momentum": nesterov_momentum},
                                      _residual(ratio * m_new, e.update), MOMENTUM_NESTEROV, (), t)
    else:
        fits[MOMENTUM_NESTEROV] = Fit("SGD", {"learning_rate": -negative_lr, "momentum": momentum},
                                      _residual(momentum * m_new + negative_lr * e.g, e.update), MOMENTUM_NESTEROV,
                                      assumed, t)
    best = min(fits.values(), key=lambda fit: fit.residual)
    if best.formula == MOMENTUM_NESTEROV and abs(best.values["momentum"]) < IDENTIFIABLE:
        best = fits[MOMENTUM_PLAIN]     # μ = 0: the two forms are one
    return best


def _adamax(e: _Elements, t: int, declared: dict) -> Fit:
    """m_new = β₁·m + (1 - β₁)·g, u_new = max(β₂·u, |g|), update = -lr·m_new / ((1 - β₁ᵗ)·(u_new + ε))
    (Keras 1, 2 and 3 alike): β₁ from m, β₂ from the elements where β₂·u won the max (none at the
    first step: assumed), then lr and ε from the update."""
    beta_1 = decay_rate(e.after["m"], e.before["m"], e.g)
    u_old, u_new = e.before["u"], e.after["u"]
    kept = (u_old > 0) & (u_new > np.abs(e.g) * (1 + 1e-6))
    values, assumed = {"beta_1": beta_1}, []
    if np.any(kept):
        values["beta_2"] = float(np.median(u_new[kept] / u_old[kept]))
    else:
        values["beta_2"] = declared.get("beta_2", 0.999)
        assumed.append("beta_2")
    m = e.after["m"]
    keep = (e.update != 0) & (m != 0)
    ratio, u = -m[keep] / e.update[keep], u_new[keep]       # = (1 - β₁ᵗ)·(u + ε) / lr
    epsilon = declared.get("epsilon", 1e-7)
    if _identifiable(epsilon, u):
        slope, intercept = _lstsq([u, np.ones_like(ratio)], ratio)
        epsilon = intercept / slope
    else:
        (slope,) = _lstsq([u + epsilon], ratio)
        assumed.append("epsilon")
    learning_rate = (1 - beta_1 ** t) / slope
    values.update(learning_rate=learning_rate, epsilon=epsilon)
    predicted = -learning_rate / (1 - beta_1 ** t) * m / (u_new + epsilon)
    return Fit("Adamax", values, _residual(predicted, e.update), assumed=tuple(assumed), step=t)


def _nadam(e: _Elements, t: int, declared: dict) -> Fit:
    """m_new = β₁·m + (1 - β₁)·g, v_new = β₂·v + (1 - β₂)·g², and (Keras 1, 2 and 3 alike)
    update = -lr·(μₜ₊₁·m_new / (1 - Πₜ·μₜ₊₁) + (1 - μₜ)·g / (1 - Πₜ)) / (√(v_new / (1 - β₂ᵗ)) + ε),
    with μₜ the momentum schedule (``NADAM_KERAS2``: 0.96^(0.004·t), ``NADAM_KERAS3``: 0.96^t) and
    Πₜ = μ₁·…·μₜ (an optimizer that started at iteration 0). β₁, β₂ from the slots; for each schedule
    lr and ε from the update, like Adam's. Past the first step the two schedules weigh m_new and g
    differently and the closer fit tells the schedule; at the first step m_new = (1 - β₁)·g and
    the schedule only scales lr (by 0.6 % between the two): it is the one whose lr is the declared
    lr, and where neither's is (the learning rate differs as well), it is left unnamed."""
    beta_1 = decay_rate(e.after["m"], e.before["m"], e.g)
    beta_2 = decay_rate(e.after["v"], e.before["v"], e.g ** 2)
    m, v_hat = e.after["m"], e.after["v"] / (1 - beta_2 ** t)
    keep = (e.update != 0) & ((m != 0) | (e.g != 0))
    root_v, update = np.sqrt(v_hat[keep]), e.update[keep]
    epsilon = declared.get("epsilon", 1e-7)
    identifiable = _identifiable(epsilon, root_v)
    fits = {}
    for formula in (NADAM_KERAS2, NADAM_KERAS3):
        decay = declared.get("schedule_decay", 0.004) if formula == NADAM_KERAS2 else 1.0
        a, b = _nadam_coefficients(beta_1, decay, t)
        numerator = a * m[keep] + b * e.g[keep]
        ratio = -numerator / update                          # = (√v̂ + ε) / lr
        if identifiable:
            slope, intercept = _lstsq([root_v, np.ones_like(ratio)], ratio)
            fitted_epsilon, assumed = intercept / slope, ()
        else:
            (slope,) = _lstsq([root_v + epsilon], ratio)
            fitted_epsilon, assumed = epsilon, ("epsilon",)
        learning_rate = 1 / slope
        values = {"learning_rate": learning_rate, "beta_1": beta_1, "beta_2": beta_2, "epsilon": fitted_epsilon}
        if formula == NADAM_KERAS2:     # the declared one, not solved: it only chooses the variant
            values["schedule_decay"] = decay
            assumed = assumed + ("schedule_decay",)
        fits[formula] = Fit("Nadam", values, _residual(-learning_rate * numerator / (root_v + fitted_epsilon), update),
                            formula=formula, assumed=assumed, step=t)
    if np.any(e.before["m"]):
        return min(fits.values(), key=lambda fit: fit.residual)
    declared_lr = declared.get("learning_rate")
    matching = [fit for fit in fits.values()
                if declared_lr and abs(fit.values["learning_rate"] / declared_lr - 1) <= STEP_MATCH]
    if len(matching) == 1:
        return matching[0]
    default = fits[NADAM_KERAS2 if "schedule_decay" in declared else NADAM_KERAS3]
    return Fit("Nadam", default.values, default.residual, "", default.assumed + ("formula",), t)


def nadam_schedule(beta_1: float, decay: float, steps) -> np.ndarray:
    """μᵢ = β₁·(1 - ½·0.96^(decay·i)) for each step number i."""
    return beta_1 * (1 - 0.5 * 0.96 ** (decay * np.asarray(steps, np.float64)))


def _nadam_coefficients(beta_1: float, decay: float, t: int) -> tuple[float, float]:
    """(the weight of m_new, the weight of g) in Nadam's step t, from an optimizer started at iteration 0."""
    mu = nadam_schedule(beta_1, decay, np.arange(1, t + 2))
    product = float(np.prod(mu[:t]))                         # Πₜ
    return float(mu[t] / (1 - product * mu[t])), float((1 - mu[t - 1]) / (1 - product))


SOLVERS = {"Adam": _adam, "RMSprop": _rmsprop, "Adagrad": _adagrad, "Adadelta": _adadelta, "SGD": _sgd,
           "Adamax": _adamax, "Nadam": _nadam}


# ---- numerics -----------------------------------------------------------------------------
def decay_rate(new: np.ndarray, old: np.ndarray, term: np.ndarray) -> float:
    """β in new = β·old + (1 - β)·term, i.e. new - term = β·(old - term)."""
    x, y = old - term, new - term
    return float(np.dot(x, y) / np.dot(x, x)) if np.dot(x, x) > 0 else float("nan")


def _lstsq(columns: list[np.ndarray], target: np.ndarray) -> list[float]:
    """Least squares of target ≈ Σ cᵢ·columnᵢ, each row weighted by 1/|target| (relative error)."""
    keep = np.isfinite(target) & (target != 0)
    for column in columns:
        keep &= np.isfinite(column)
    weight = 1 / np.abs(target[keep])
    matrix = np.stack([column[keep] * weight for column in columns], axis=1)
    solution, *_ = np.linalg.lstsq(matrix, target[keep] * weight, rcond=None)
    return [float(value) for value in solution]


def _ratio(unit: np.ndarray, actual: np.ndarray) -> float:
    """c minimising Σ((c·unit - actual) / actual)²."""
    x = unit / actual
    return float(np.sum(x) / np.sum(x * x))


def _relative_misfit(unit: np.ndarray, actual: np.ndarray) -> float:
    x = unit / actual
    return float(np.sum((_ratio(unit, actual) * x - 1) ** 2))


def _search_log(misfit, low: float, high: float) -> float:
    """The argument in [low, high] minimising ``misfit``: a grid in log space, then golden-section refinement."""
    grid = np.logspace(math.log10(low), math.log10(high), 61)
    best = int(np.argmin([misfit(x) for x in grid]))
    a, b = math.log10(grid[max(best - 1, 0)]), math.log10(grid[min(best + 1, len(grid) - 1)])
    golden = (math.sqrt(5) - 1) / 2
    for _ in range(60):
        c, d = b - golden * (b - a), a + golden * (b - a)
        if misfit(10 ** c) < misfit(10 ** d):
            b = d
        else:
            a = c
    return 10 ** ((a + b) / 2)


def _identifiable(epsilon: float, base: np.ndarray) -> bool:
    """Whether ε (next to ``base`` in a denominator) moves some element by more than float32 can hide."""
    return bool(base.size) and float(np.max(epsilon / (np.abs(base) + epsilon))) > IDENTIFIABLE


def _residual(predicted: np.ndarray, actual: np.ndarray) -> float:
    scale = float(np.max(np.abs(actual), initial=0.0))
    return float(np.max(np.abs(predicted - actual), initial=0.0) / scale) if scale else 0.0
