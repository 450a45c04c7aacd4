"""Solving each side's BatchNormalization momentum from how its moving statistics moved.

Keras updates ``new = m·old + (1 - m)·batch`` (m = 0.99 by default weighs the old value;
PyTorch's momentum 0.1 weighs the new batch, i.e. Keras's 0.9). m is solved by least squares
from the moving mean: old, new and the batch mean (which the worker measures on the layer's
input). The moving variance is not used for m: Keras 2 (and TensorFlow's fused kernel) moved
it towards the unbiased batch variance, Keras 3 towards the biased one, and Theano's training
path added ε; with m known, which of those the variance moved towards is named instead."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from kdiff.train.explain import Candidate
from kdiff.train.fitting import decay_rate

CAUSE = "batchnorm-momentum"
# How far two solved momenta may be apart (relative to 1 - m) and still be the same setting
SAME_MOMENTUM = 1e-2
# 1 - m below this: the statistics barely move, the variance's form cannot be told
UNMOVED = 1e-6
BIASED, UNBIASED = "biased batch variance (÷n: Keras 3)", "unbiased batch variance (÷(n-1): Keras 2, TF's fused kernel)"
PLUS_EPSILON = " + ε (Theano's training path)"


@dataclass(frozen=True)
class StatisticStep:
    """One moving statistic of one side at one step."""
    before: np.ndarray
    after: np.ndarray
    batch: np.ndarray             # the batch's own statistic of that kind (mean, or biased variance)
    samples: int                  # how many values each batch statistic averages


@dataclass(frozen=True)
class MomentumFit:
    layer: str
    momentum: float               # solved from the moving mean
    residual: float               # max |predicted - new| / max |new - old| of the moving mean
    variance_form: str = ""       # what the moving variance moved towards ("": not told apart)
    declared: float | None = None  # the layer's configured momentum

    def to_json(self) -> dict:
        return {"layer": self.layer, "momentum": self.momentum, "residual": self.residual,
                "variance": self.variance_form or None, "declared": self.declared}


def fit_momentum(layer: str, mean: StatisticStep, variance: StatisticStep | None, epsilon: float,
                 declared: float | None) -> MomentumFit | None:
    """The momentum of this step's moving-mean update, or None where the mean did not move
    relative to the batch (old = batch mean: any momentum fits)."""
    old, new, batch = (np.asarray(a, np.float64).ravel() for a in (mean.before, mean.after, mean.batch))
    momentum = decay_rate(new, old, batch)
    if not math.isfinite(momentum):
        return None
    scale = float(np.max(np.abs(new - old), initial=0.0))
    predicted = momentum * old + (1 - momentum) * batch
    residual = float(np.max(np.abs(predicted - new), initial=0.0) / scale) if scale else 0.0
    form = _variance_form(momentum, variance, epsilon) if variance is not None else ""
    return MomentumFit(layer, momentum, residual, form, declared)


def _variance_form(momentum: float, variance: StatisticStep, epsilon: float) -> str:
    if 1 - momentum < UNMOVED:
        return ""
    old, new, biased = (np.asarray(a, np.float64).ravel() for a in (variance.before, variance.after, variance.batch))
    moved_towards = (new - momentum * old) / (1 - momentum)
    n = variance.samples
    forms = {BIASED: biased, UNBIASED: biased * n / max(n - 1, 1),
             BIASED + PLUS_EPSILON: biased + epsilon, UNBIASED + PLUS_EPSILON: biased * n / max(n - 1, 1) + epsilon}
    misfit = {form: float(np.max(np.abs(moved_towards - value) / np.maximum(np.abs(value), 1e-12)))
              for form, value in forms.items()}
    return min(misfit, key=misfit.get)


def same_momentum(a: float, b: float) -> bool:
    return abs(a - b) <= SAME_MOMENTUM * max(1 - a, 1 - b, 1e-12)


def candidates(fits_a: dict, fits_b: dict, layer_pairs: dict) -> list[Candidate]:
    """A candidate per paired layer whose solved momenta differ: side B re-runs with side A's.
    ``fits_*``: layer -> MomentumFit; ``layer_pairs``: side A's layer -> side B's."""
    found = []
    for a_layer, b_layer in layer_pairs.items():
        fit_a, fit_b = fits_a.get(a_layer), fits_b.get(b_layer)
        if fit_a is None or fit_b is None or same_momentum(fit_a.momentum, fit_b.momentum):
            continue
        value = fit_a.declared if fit_a.declared is not None and same_momentum(fit_a.momentum, fit_a.declared) \
            else float(f"{fit_a.momentum:.6g}")
        extra = {"variance": {"a": fit_a.variance_form, "b": fit_b.variance_form}} \
            if fit_a.variance_form != fit_b.variance_form else {}
        found.append(Candidate(CAUSE, "momentum", fit_a.momentum, fit_b.momentum, {},
                               layers={b_layer: {"momentum": value}}, layer=a_layer, extra=extra))
    return found
