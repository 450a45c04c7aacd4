"""The backward diff: both sides differentiate the same loss, and every layer's gradients
(with respect to its output and to each weight) are compared as they stream in.

Without labels the loss is a fixed random projection of the model's outputs,
``loss = sum_k sum(output_k * P_k)``, with the same ``P_k`` sent to both sides, so gradients
are comparable on any model. With labels (``NamedLoss``) it is the model's own loss as training
computes it: the batch mean of a Keras loss on the labels, summed over the outputs; each side
uses its own framework's definition of that loss. Weights are paired by position within their layer (each
framework names them its own way); they are reported under side A's names."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from kdiff.alignment import LayerPair
from kdiff.metrics import LayerMetrics, Measured, Tolerance, combine, largest_finite_abs
from kdiff.model_inputs import ModelInputs
from kdiff.protocol import vocabulary as v
from kdiff.tolerances import Tolerances, as_tolerances
from kdiff.streams import stream_pairs
from kdiff.workers import WorkerPool

PROJECTION_SEED = 20241124


@dataclass(frozen=True)
class NamedLoss:
    """A Keras loss by name and its label arrays, one per model output (in output order)."""

    name: str
    labels: tuple
    paths: tuple = ()

    def to_json(self) -> dict:
        return {"kind": "loss", "name": self.name, "labels": list(self.paths)}


PROJECTION = {"kind": "projection", "seed": PROJECTION_SEED}


@dataclass(frozen=True)
class GradientDiff:
    output: LayerMetrics | str          # d loss / d layer output; a string says why it was not compared
    weights: tuple = ()                 # ((side A's weight name, LayerMetrics | str), ...)
    carried: bool = False               # they differ only by what the forward pass carries (kdiff.gradient_isolation)
    alone: object = None                # gradient_isolation.BackwardAlone of the layer's backward alone, or why not

    @property
    def matches(self) -> bool:
        return isinstance(self.output, LayerMetrics) and self.output.matches and all(
            isinstance(m, LayerMetrics) and m.matches for _, m in self.weights)


def output_layers(layers: dict[str, dict]) -> list[str]:
    """The layers no other layer consumes, in topological order: the model's outputs."""
    consumed = {source for layer in layers.values() for source in layer.get("inbound", ())}
    return [name for name in layers if name not in consumed]


def projections(shapes: list[tuple]) -> list[np.ndarray]:
    """One fixed random array per model output, scaled so the loss stays O(1)."""
    rng = np.random.default_rng(PROJECTION_SEED)
    return [(rng.standard_normal(shape) / math.sqrt(max(1, math.prod(shape)))).astype(np.float32)
            for shape in shapes]


def gradient_tolerance(tolerance: Tolerance, a: np.ndarray, b: np.ndarray) -> Tolerance:
    """Gradients are judged against their own scale: float error in a gradient is relative to
    the largest terms summed into it, not to each element, so atol grows with max |g|."""
    return gradient_tolerance_at(tolerance, largest_finite_abs([a, b]))


def gradient_tolerance_at(tolerance: Tolerance, scale: float) -> Tolerance:
    """gradient_tolerance for gradients whose largest finite |value| (over both sides) is ``scale``."""
    return Tolerance(atol=max(tolerance.atol * 1e-2, tolerance.rtol * scale), rtol=tolerance.rtol)


def terms_per_weight(output_gradients: list, weight: np.ndarray) -> int:
    """How many terms are summed into each element of a weight's gradient: the output gradient's
    elements per output channel (the batch and every position), taking the weight's last axis as
    the output channels (Dense, Conv kernels and biases)."""
    size = output_gradients[0].size if output_gradients else 0
    channels = weight.shape[-1] if weight.ndim else 1
    return size // channels if channels and size % channels == 0 else 1


def compare_gradient(a: np.ndarray, b: np.ndarray, tolerance: Tolerance) -> LayerMetrics | str:
    """Two gradients judged against their own scale (gradient_tolerance_at); a string where their shapes differ."""
    return _compare(a, b, tolerance)


def _compare(a: np.ndarray, b: np.ndarray, tolerance: Tolerance) -> LayerMetrics | str:
    if a.shape != b.shape:
        return f"shapes differ: {a.shape} vs {b.shape}"
    measured = Measured(a, b)  # its pass measures the scale the tolerance is sized from
    return measured.judged(gradient_tolerance_at(tolerance, max(measured.scale_a, measured.scale_b)))


class GradientComparison:
    """What one backward diff sends both sides, and how it pairs and compares what they stream back:
    ``on_part``/``on_pair`` for kdiff.streams, the differences in ``results`` (keyed by side A's layer
    name). ``weight_maps`` (side A's layer name -> one ElementMap or None per weight) says where side B
    holds A's weight reordered; A's gradient of that weight is reordered the same way before it is
    compared. ``bridge`` (kdiff.layouts) moves side B's input and projections to its layout, and its
    output gradients back to side A's. With ``loss``, both sides differentiate that loss on its labels
    instead of the projection. Each layer's gradients are judged by its gradient rule in ``tolerance``
    (kdiff.tolerances), scaled to them."""

    def __init__(self, pairs: list[LayerPair], inputs: "ModelInputs | np.ndarray | list", output_shapes: list[tuple],
                 tolerance: Tolerance | Tolerances, weight_maps: dict[str, list] | None = None, bridge=None,
                 loss: NamedLoss | None = None, projected: list[np.ndarray] | None = None):
        inputs = ModelInputs.of(inputs, bridge if bridge is not None and bridge.active else None)
        self.output_shapes = list(output_shapes)
        self.weight_maps = weight_maps or {}
        self.tolerances = as_tolerances(tolerance)
        self.bridge = bridge
        self.args = {"loss": loss.name} if loss is not None else None
        if loss is not None:
            targets = v.pack(loss.labels, v.LABELS)
        else:  # ``projected``: given projections (attach: the run's own d loss / d output) instead of random ones
            targets = v.pack(projections(output_shapes) if projected is None else projected, v.PROJECTIONS)
        self.arrays = {**inputs.pack("a", v.MODEL_INPUTS), **targets}
        self.b_arrays = None
        if bridge is not None and bridge.active:  # (a model with one input)
            b_outputs = output_layers({pair.b["name"]: pair.b for pair in pairs if pair.b is not None})
            self.b_arrays = {**inputs.pack("b", v.MODEL_INPUTS),
                             **{key: bridge.to_b(name, [self.arrays[key]])[0] if self.arrays[key].ndim >= 3
                                else self.arrays[key] for key, name in zip(targets, b_outputs)}}
            # (sparse class ids have no layout)
        self.results: dict[str, GradientDiff] = {}
        self.failure: str | None = None  # why a side could not differentiate the model, when it could not

    def on_part(self, side: str, header: dict, part: dict):
        outputs = v.unpack(part, v.OUTPUT_GRADIENTS)
        if side == "b" and self.b_arrays is not None:
            outputs = self.bridge.to_a(header.get("layer"), outputs)
        weights = v.unpack(part, v.WEIGHT_GRADIENTS)
        return outputs, list(zip(header.get("weights", ()), weights))

    @staticmethod
    def merge(cut_kept, own_kept):
        """A group's gradients (kdiff.streams): the output gradient at its cut, the weight gradients of
        the pair's own layer."""
        return cut_kept[0], own_kept[1]

    def on_pair(self, a_layer: str, a_kept, b_kept) -> None:
        (a_outputs, a_weights), (b_outputs, b_weights) = a_kept, b_kept
        tolerances = self.tolerances
        tolerance = tolerances.gradient(a_layer)
        if len(a_outputs) != len(b_outputs):
            output: LayerMetrics | str = f"{len(a_outputs)} output gradient(s) on side A, {len(b_outputs)} on B"
        else:
            parts = [_compare(x, y, tolerance) for x, y in zip(a_outputs, b_outputs)]
            output = next((p for p in parts if isinstance(p, str)), None) or combine(parts)
        maps = list(self.weight_maps.get(a_layer) or ())
        maps += [None] * (len(a_weights) - len(maps))
        paired = _paired_weights(a_weights, b_weights)
        if paired is None:
            weights = tuple((name, f"{len(a_weights)} weights on side A, {len(b_weights)} on B")
                            for name, _ in a_weights)
        else:
            weights = []
            for index, (name, x), y in paired:
                element_map = maps[index]
                weight_tolerance = tolerances.gradient(a_layer, terms_per_weight(a_outputs, x))
                weights.append((name, _compare(element_map(x), element_map.part_of_b(y), weight_tolerance)
                                if element_map else _compare(x, y, weight_tolerance)))
            weights = tuple(weights)
        self.results[a_layer] = GradientDiff(output, weights)


def _short(name: str) -> str:
    return name.rsplit("/", 1)[-1].split(":", 1)[0]


def _paired_weights(a_weights: list, b_weights: list) -> list | None:
    """Side A's weights with side B's gradient of each: in order where both hold as many; else those both
    hold by the same name (a conv without a bias whose BatchNormalization the other side folded into a conv
    with one: the kernels are compared, the bias has no counterpart in side A's layer); None if none pair."""
    if len(a_weights) == len(b_weights):
        return [(index, weight, b) for index, (weight, (_, b)) in enumerate(zip(a_weights, b_weights))]
    b_by_name = {_short(name): value for name, value in b_weights}
    paired = [(index, (name, a), b_by_name[_short(name)]) for index, (name, a) in enumerate(a_weights)
              if _short(name) in b_by_name]
    return paired or None


def backward_and_compare(pool: WorkerPool, pairs: list[LayerPair], inputs: ModelInputs,
                         output_shapes: list[tuple], tolerance: Tolerance | Tolerances, timeout: float,
                         weight_maps: dict[str, list] | None = None, bridge=None, loss: NamedLoss | None = None,
                         projected: list[np.ndarray] | None = None) -> dict[str, GradientDiff]:
    """Gradient differences keyed by side A's layer name, from both sides' 'backward' (see GradientComparison)."""
    comparison = GradientComparison(pairs, inputs, output_shapes, tolerance, weight_maps, bridge, loss, projected)
    stream_pairs(pool, pairs, "backward", comparison.arrays, timeout, comparison.on_part, comparison.on_pair,
                 b_arrays=comparison.b_arrays, args=comparison.args, merge=comparison.merge)
    return comparison.results
