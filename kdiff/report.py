"""The results of a diff: frozen dataclasses, and their JSON form (whose keys are stable)."""
from __future__ import annotations

from dataclasses import dataclass, field

from kdiff import __version__
from kdiff.errors import EXIT_DIVERGED, EXIT_MATCH
from kdiff.protocol.json_values import json_number
from kdiff.metrics import LayerMetrics, Tolerance

MATCH, DIVERGED, PROPAGATED, ONLY_A, ONLY_B = "match", "diverged", "propagated", "only-a", "only-b"


@dataclass(frozen=True)
class BackendInfo:
    side: str
    name: str
    versions: dict
    device: str
    python: str
    env: str = ""          # the kdiff environment's name, "" for a user's interpreter
    model: str = ""
    weights: str = ""
    layout: str = ""       # the memory layout the model was built in or states, "" when none


@dataclass(frozen=True)
class LayerResult:
    name: str
    class_name: str
    a_shape: tuple | None
    b_shape: tuple | None
    status: str
    metrics: LayerMetrics | None = None
    b_name: str = ""          # the paired layer's name on side B, when it differs
    aligned_by: str = ""      # "name" or "order"; "" for a layer present on one side only
    b_class_name: str = ""
    inbound: tuple = ()
    note: str = ""
    grad: object = None       # kdiff.gradients.GradientDiff when gradients were compared
    isolated: object = None   # LayerMetrics of side B's layer alone on side A's inputs (--isolate), or why not
    layout: str = ""          # how side B's values were moved to side A's layout to compare, "" when not
    tolerance: Tolerance | None = None  # what the layer's outputs were judged by (kdiff.tolerances)
    a_members: tuple = ()     # a group (kdiff.alignment): side A's layers in it, in order; () for none
    b_members: tuple = ()


@dataclass(frozen=True)
class DiffReport:
    backends: tuple[BackendInfo, BackendInfo]
    layers: tuple[LayerResult, ...]
    tolerance: Tolerance | None   # the user's, for every layer; None: derived per layer (LayerResult.tolerance)
    sample: dict
    findings: tuple = ()           # kdiff.diagnosis.model.Finding, in the order they were found
    notes: tuple[str, ...] = ()
    unexplained: object = None     # kdiff.diagnosis.model.Unexplained: a divergence no rule explains
    repaired: "DiffReport | None" = None  # the comparison once every proven fix was applied
    written: object = None         # kdiff.diagnosis.written.WrittenRepair, with --write-fixed
    noise_floor: dict = field(default_factory=dict)  # side -> {layer: max |run 1 - run 2|} where it disagrees
    gradient_loss: dict | None = None  # what the gradients are of: a projection, or a named loss on labels
    input_warnings: tuple[str, ...] = ()  # what in the files and the sample kdiff accepted but says up front
    picture: object = None         # kdiff.picture.DivergencePicture of the first divergence's output
    kdiff_version: str = field(default=__version__)

    @property
    def first_divergence(self) -> tuple[int, LayerResult] | None:
        for index, layer in enumerate(self.layers):
            if layer.status == DIVERGED:
                return index, layer
        return None

    @property
    def first_grad_divergence(self) -> tuple[int, LayerResult] | None:
        """Where the gradients start to differ, walking back from the loss: the layer nearest the
        output whose own weight gradients differ while its output gradient matches, or whose
        output gradient differs while every layer consuming its output has matching ones; a layer whose
        gradients differ only by what the forward pass carries (kdiff.gradient_isolation) is passed over."""
        consumers: dict[str, list[LayerResult]] = {}
        for layer in self.layers:
            for source in layer.inbound:
                consumers.setdefault(source, []).append(layer)
        for index in reversed(range(len(self.layers))):
            layer = self.layers[index]
            grad = layer.grad
            if grad is None or grad.matches or grad.carried:
                continue
            output_matches = isinstance(grad.output, LayerMetrics) and grad.output.matches
            if output_matches or all(c.grad is None or (isinstance(c.grad.output, LayerMetrics) and
                                                        c.grad.output.matches) for c in consumers.get(layer.name, [])):
                return index, layer
        return None

    @property
    def exit_code(self) -> int:
        """0 when every layer matches; 1 when a divergence was found (even one kdiff then repaired)."""
        return EXIT_MATCH if all(layer.status == MATCH for layer in self.layers) else EXIT_DIVERGED

    def _repr_html_(self) -> str:
        """A notebook shows the HTML report (the table, the plots, the findings) in its output cell."""
        from kdiff.ui.html import notebook_html

        names = " against ".join(info.name for info in self.backends)
        return notebook_html(self.to_json(), f"kdiff: {names}")

    def to_json(self) -> dict:
        return {
            "kdiff_version": self.kdiff_version,
            "backends": {info.side: backend_json(info) for info in self.backends},
            "sample": self.sample,
            "tolerance": {"mode": "derived"} if self.tolerance is None else
            {"mode": "given", "atol": self.tolerance.atol, "rtol": self.tolerance.rtol},
            "layers": [_layer_json(layer) for layer in self.layers],
            "first_divergence": _place(self.first_divergence),
            "first_grad_divergence": _place(self.first_grad_divergence),
            "gradient_loss": self.gradient_loss,
            "noise_floor": {side: {"deterministic": not differing, "differing_layers": differing}
                            for side, differing in self.noise_floor.items()},
            "findings": [finding.to_json() for finding in self.findings],
            "unexplained": self.unexplained.to_json() if self.unexplained is not None else None,
            "after_fixes": _after_fixes(self.repaired) if self.repaired is not None else None,
            "written": self.written.to_json() if self.written is not None else None,
            "notes": list(self.notes),
            "input_warnings": list(self.input_warnings),
            "first_divergence_picture": self.picture.to_json() if self.picture is not None else None,
        }


def _after_fixes(repaired: "DiffReport") -> dict:
    return {"all_match": repaired.exit_code == EXIT_MATCH,
            "first_divergence": _place(repaired.first_divergence),
            "first_grad_divergence": _place(repaired.first_grad_divergence),
            "layers": [{"name": layer.name, "status": layer.status,
                        "grad_match": layer.grad.matches if layer.grad is not None else None,
                        "grad_carried": layer.grad.carried if layer.grad is not None else None,
                        "max_abs": json_number(layer.metrics.max_abs) if layer.metrics else None,
                        "max_rel": json_number(layer.metrics.max_rel) if layer.metrics else None,
                        "tolerance": _tolerance_json(layer.tolerance)}
                       for layer in repaired.layers]}


def backend_json(info: BackendInfo) -> dict:
    return {"name": info.name, "versions": info.versions, "device": info.device, "python": info.python,
            "env": info.env or None, "model": info.model, "weights": info.weights or None,
            "layout": info.layout or None}


def _place(found: tuple[int, LayerResult] | None) -> dict | None:
    return {"layer": found[1].name, "index": found[0]} if found else None


def metrics_json(m: LayerMetrics | str | None) -> dict | None:
    if not isinstance(m, LayerMetrics):
        return {"note": m} if isinstance(m, str) else None
    return {"max_abs": json_number(m.max_abs), "max_rel": json_number(m.max_rel), "mean_abs": json_number(m.mean_abs),
            "cosine": json_number(m.cosine), "out_of_tolerance": m.out_of_tolerance, "match": m.matches}


def _alone_json(alone) -> dict | None:
    """A layer's backward alone on both sides (kdiff.gradient_isolation.BackwardAlone), or why not."""
    if alone is None or isinstance(alone, str):
        return {"note": alone} if alone else None
    return alone.to_json()


def _tolerance_json(tolerance: Tolerance | None) -> dict | None:
    return None if tolerance is None else {"atol": tolerance.atol, "rtol": tolerance.rtol,
                                           "reason": tolerance.reason or None}


def _layer_json(layer: LayerResult) -> dict:
    m = layer.metrics
    grad = layer.grad
    return {
        "name": layer.name,
        "class": layer.class_name,
        "a_shape": list(layer.a_shape) if layer.a_shape is not None else None,
        "b_shape": list(layer.b_shape) if layer.b_shape is not None else None,
        "max_abs": json_number(m.max_abs) if m else None,
        "max_rel": json_number(m.max_rel) if m else None,
        "mean_abs": json_number(m.mean_abs) if m else None,
        "cosine": json_number(m.cosine) if m else None,
        "out_of_tolerance": m.out_of_tolerance if m else None,
        "nan": {"a": m.nan_a, "b": m.nan_b} if m else None,
        "inf": {"a": m.inf_a, "b": m.inf_b} if m else None,
        "status": layer.status,
        "b_name": layer.b_name or layer.name if layer.aligned_by else None,
        "a_members": list(layer.a_members) or None,
        "b_members": list(layer.b_members) or None,
        "aligned_by": layer.aligned_by or None,
        "note": layer.note or None,
        "layout": layer.layout or None,
        "isolated": metrics_json(layer.isolated),
        "tolerance": _tolerance_json(layer.tolerance),
        "grad": metrics_json(grad.output) if grad is not None else None,
        "weight_grads": {name: metrics_json(metrics) for name, metrics in grad.weights} if grad is not None else None,
        "grad_carried": grad.carried if grad is not None else None,
        "grad_alone": _alone_json(grad.alone) if grad is not None else None,
    }
