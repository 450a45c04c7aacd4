"""The results of ``kdiff train``: frozen dataclasses and their JSON form (stable keys:
``kdiff_version``, ``backends``, ``steps``, ``first_divergence``, ``findings``)."""
from __future__ import annotations

from dataclasses import dataclass, field

from kdiff import __version__
from kdiff.errors import EXIT_DIVERGED, EXIT_MATCH
from kdiff.metrics import LayerMetrics
from kdiff.protocol.json_values import json_number
from kdiff.report import BackendInfo, backend_json, metrics_json


@dataclass(frozen=True)
class WeightError:
    weight: str                   # side A's name of the weight
    metrics: LayerMetrics

    def to_json(self) -> dict:
        return {"weight": self.weight, "max_abs": json_number(self.metrics.max_abs),
                "max_rel": json_number(self.metrics.max_rel), "match": self.metrics.matches}


@dataclass(frozen=True)
class StepRecord:
    step: int
    loss_a: float
    loss_b: float
    worst_update: WeightError | None      # the paired weight whose update differs most (scale-relative)
    diverged_weights: tuple = ()          # side A's names of the weights whose updates do not match

    def to_json(self) -> dict:
        return {"step": self.step, "loss_a": json_number(self.loss_a), "loss_b": json_number(self.loss_b),
                "worst_update": self.worst_update.to_json() if self.worst_update else None,
                "diverged_weights": list(self.diverged_weights)}


@dataclass(frozen=True)
class LayerStep:
    """One layer at one step: its activation, the loss's gradient with respect to it, and per
    trainable weight the gradient applied, the update and each optimizer slot."""
    name: str
    class_name: str
    activation: LayerMetrics | str
    gradient: LayerMetrics | str
    weights: tuple = ()                   # ((weight name, {"gradient"|"update"|"slot:KIND": LayerMetrics}), ...)

    def to_json(self) -> dict:
        return {"name": self.name, "class": self.class_name, "activation": metrics_json(self.activation),
                "gradient": metrics_json(self.gradient),
                "weights": {name: {key: metrics_json(m) for key, m in parts.items()} for name, parts in self.weights}}


@dataclass(frozen=True)
class TrainReport:
    backends: tuple[BackendInfo, BackendInfo]
    optimizers: dict                      # side -> {"optimizer", "config"} as each framework resolved it
    loss: str
    batch_size: int
    steps: tuple[StepRecord, ...]
    first_divergence: tuple | None        # (step, side A's weight name)
    divergence_layers: tuple = ()         # LayerStep of every layer at the first diverging step
    fits: dict = field(default_factory=dict)      # side -> kdiff.train.fitting.Fit at that step
    findings: tuple = ()                  # the forward repairs, then the optimizer findings
    notes: tuple = ()
    statistics_fits: dict = field(default_factory=dict)  # side -> (moving_statistics.MomentumFit per layer)
    forward_divergence: dict | None = None  # the forward divergence left before the first step, unexplained
    kdiff_version: str = __version__

    @property
    def exit_code(self) -> int:
        agree = self.first_divergence is None and not self.findings and self.forward_divergence is None
        return EXIT_MATCH if agree else EXIT_DIVERGED

    def to_json(self) -> dict:
        first = self.first_divergence
        return {
            "kdiff_version": self.kdiff_version,
            "backends": {info.side: backend_json(info) for info in self.backends},
            "optimizers": self.optimizers,
            "loss": self.loss,
            "batch_size": self.batch_size,
            "steps": [record.to_json() for record in self.steps],
            "first_divergence": {"step": first[0], "weight": first[1]} if first else None,
            "divergence_layers": [layer.to_json() for layer in self.divergence_layers],
            "fits": {side: fit.to_json() for side, fit in self.fits.items() if fit is not None},
            "moving_statistics": {side: [fit.to_json() for fit in fits] for side, fits in self.statistics_fits.items()},
            "findings": [finding.to_json() for finding in self.findings],
            "forward_divergence": self.forward_divergence,
            "notes": list(self.notes),
        }
