"""The diagnosis's data: what is known about a diverging layer, what a rule proposes, what was proven."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class LayerEvidence:
    """Everything a rule may look at for the layer where a divergence starts."""

    layer: str                  # the layer's name on side A
    b_layer: str                # its name on side B
    class_name: str             # side B's class name (the side being repaired)
    a_inputs: tuple             # side A's inputs to the layer (outputs of the layers feeding it)
    a_outputs: tuple            # side A's outputs of the layer
    b_weights: tuple            # side B's weights of the layer: ((name, array), ...)
    a_weights: tuple            # side A's weights of the layer
    input_shapes: tuple = ()    # on side A, the output shapes of the layers feeding this one
    feeding_classes: tuple = ()  # on side A, the classes of the layers feeding this one
    feeding_input_shapes: tuple = ()  # on side A, the input shapes of the layers feeding this one
    a_config: dict = field(default_factory=dict)  # side A's layer config, as A's framework writes it
    b_config: dict = field(default_factory=dict)  # side B's layer config
    a_chain: tuple = ()         # a group (kdiff.alignment): side A's layers in it, in order; () for the layer alone
    b_chain: tuple = ()
    a_group: tuple = ()         # the group's other layers on side A: ((name, class name, config), ...) in order
    b_group: tuple = ()
    a_group_weights: tuple = ()  # the weights of side A's other layers in the group: ((name, ((weight, array), ...)), ...)
    b_backend: str = ""         # side B's backend and its versions ({"keras": "3.15.1", ...}): framework bugs
    b_versions: dict = field(default_factory=dict)

    def chain(self, side: str) -> tuple:
        own = self.layer if side == "a" else self.b_layer
        return (self.a_chain if side == "a" else self.b_chain) or (own,)


@dataclass(frozen=True)
class Candidate:
    """A change to side B's layer that would explain the divergence if it removes it: new
    weights, changed settings, a forced training mode, or several of these."""

    cause: str                  # the rule's id
    fix: str                    # one sentence a person can act on
    code: str                   # the few lines that apply it in side B's framework
    b_weights: tuple | None = None  # the layer's weights with the fix applied, in the layer's order
    overrides: dict = field(default_factory=dict)  # settings of the layer's config to change
    training: bool | None = None    # call the layer in this mode; None: as the model calls it
    layer: str = ""             # the layer of side B's group whose settings change ("": the pair's own)

    @property
    def changes_config(self) -> bool:
        return bool(self.overrides) or self.training is not None


@dataclass(frozen=True)
class ErrorSize:
    max_abs: float
    max_rel: float | None  # None where it was not measured

    def to_json(self) -> dict:  # an error that could not be measured (inf) is written as the string "inf"
        return {"max_abs": _finite_or_text(self.max_abs), "max_rel": _finite_or_text(self.max_rel)}


@dataclass(frozen=True)
class Finding:
    cause: str
    layer: str
    verified: bool
    before: ErrorSize
    after: ErrorSize | None  # None for a cause proven by observation alone (a side disagreeing with itself)
    fix: str
    code: str
    explains: tuple = ()        # layers that matched once this fix was applied (filled in by the repair)
    detail: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"cause": self.cause, "layer": self.layer, "verified": self.verified,
                "before": self.before.to_json(), "after": self.after.to_json() if self.after else None,
                "fix": self.fix, "code": self.code, "explains": list(self.explains), **self.detail}


@dataclass(frozen=True)
class Unexplained:
    """A divergence no rule could prove a cause for, with the evidence a person needs next."""

    layer: str
    class_name: str
    isolated: ErrorSize         # side B's layer run on side A's inputs, against side A's output
    input_error: float          # how far side B's own inputs to the layer were from A's (max rel)
    worst_positions: tuple      # (axis, index, max abs error) of the worst slices, worst first
    reason: str = ""            # why it is left, where that is not "no rule explains it"

    def to_json(self) -> dict:
        return {"layer": self.layer, "class": self.class_name, "isolated": self.isolated.to_json(),
                "input_max_rel": self.input_error,
                "worst": [{"axis": a, "index": i, "max_abs": e} for a, i, e in self.worst_positions],
                **({"reason": self.reason} if self.reason else {})}


def _finite_or_text(value: float | None) -> float | str | None:
    return value if value is None or math.isfinite(value) else str(value)


def kernel_of(weights: tuple) -> np.ndarray | None:
    """The first weight, when it is a kernel (two or more dimensions)."""
    return weights[0][1] if weights and weights[0][1].ndim >= 2 else None
