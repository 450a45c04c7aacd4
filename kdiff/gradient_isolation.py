"""Gradients that differ only by what the forward pass carries into them. A deep model's gradients
sum what its values hold: where the outputs differ by honest rounding, the gradients that depend
on them differ too, and more (a saturated softmax's gradient is a small difference of larger
terms). Where a layer's gradients differ, its backward is run alone on both sides, on side A's
forward inputs and side A's output gradient: if side B's matches side A's there, the layer's
backward computes as side A's does and the whole-model difference is carried, not a divergence of
the backward pass. A layer's gradient difference is carried when the backward that computes it
matches alone: its own (with respect to its weights), for its weights' gradients; each of its
consumers' (with respect to their inputs), for its output's."""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from kdiff.errors import WorkerFailure
from kdiff.gradients import compare_gradient, gradient_tolerance_at, terms_per_weight
from kdiff.metrics import LayerMetrics, Measured, combine
from kdiff.report import MATCH
from kdiff.tolerances import as_tolerances

MAX_LAYERS = 1024  # backward runs of single layers, per comparison


@dataclass(frozen=True)
class BackwardAlone:
    """One layer's backward run alone on both sides, on side A's forward inputs and output gradient."""

    inputs: LayerMetrics | str   # d loss / d the layer's inputs (combined); a string says why not compared
    weights: tuple = ()          # ((side A's weight name, LayerMetrics | str), ...)

    @property
    def inputs_match(self) -> bool:
        return isinstance(self.inputs, LayerMetrics) and self.inputs.matches

    @property
    def weights_match(self) -> bool:
        return all(isinstance(m, LayerMetrics) and m.matches for _, m in self.weights)

    @property
    def matches(self) -> bool:
        return self.inputs_match and self.weights_match

    def to_json(self) -> dict:
        from kdiff.report import metrics_json

        return {"match": self.matches, "inputs": metrics_json(self.inputs),
                "weights": {name: metrics_json(m) for name, m in self.weights}}


def settle_gradients(session, layers: list, progress) -> tuple[list, list[str]]:
    """The layers, each whose gradients differ only by what is carried marked so (GradientDiff.carried,
    with its own backward's result in GradientDiff.alone), and notes on what could not be run alone.
    Only layers whose values match are settled: after a divergence of the values, the gradients differ
    because the values do, and they are judged as they are."""
    differing = [layer for layer in layers if layer.grad is not None and not layer.grad.matches
                 and layer.status == MATCH]
    if not differing:
        return list(layers), []
    consumers: dict[str, list[str]] = {}
    for layer in layers:
        for source in layer.inbound:
            consumers.setdefault(source, []).append(layer.name)
    wanted: dict[str, None] = {}
    for layer in reversed(differing):  # from the loss backwards
        if _weights_differ(layer.grad):
            wanted[layer.name] = None
        if not _output_matches(layer.grad):
            wanted.update(dict.fromkeys(consumers.get(layer.name, ())))
    names = list(wanted)[:MAX_LAYERS]
    progress.stage(f"running {len(names)} layer(s)' backward alone on both sides: own difference, or carried?")
    alone: dict[str, BackwardAlone | str] = {}
    for done, name in enumerate(names, 1):
        alone[name] = backward_alone(session, name)
        progress.layer_done(done, len(names))
    notes = []
    if len(wanted) > len(names):
        notes.append(f"the backward of {len(wanted) - len(names)} more layer(s) was not run alone (at most "
                     f"{MAX_LAYERS} per comparison): their gradients are judged in the whole model only")
    settled = []
    for layer in layers:
        grad = layer.grad
        if grad is None or grad.matches or layer.status != MATCH:
            settled.append(layer)
            continue
        own = alone.get(layer.name)
        weights_carried = not _weights_differ(grad) or (isinstance(own, BackwardAlone) and own.weights_match)
        feeding = consumers.get(layer.name, ())
        output_carried = _output_matches(grad) or (bool(feeding) and all(
            isinstance(alone.get(c), BackwardAlone) and alone[c].inputs_match for c in feeding))
        settled.append(replace(layer, grad=replace(grad, carried=weights_carried and output_carried,
                                                   alone=own if own is not None else grad.alone)))
    return settled, notes


def backward_alone(session, name: str) -> BackwardAlone | str:
    """Side A's layer ``name`` and its pair on side B, each run backward alone on side A's forward
    inputs and output gradient, compared; a string says why it could not be."""
    pair = session.pair_of(name)
    if pair is None or pair.b is None:
        return "present on one side only"
    if len(pair.members("a")) > 1 or len(pair.members("b")) > 1:
        return "a group of layers: its backward is compared in the whole model only"
    if any(member.get("masked") for side in "ab" for member in pair.members(side)):
        return "fed a mask: run alone, it would get none"
    a, b = session.clients["a"], session.clients["b"]
    inbound = list(pair.inbound("a"))
    try:
        recorded = a.outputs(inbound)
        inputs = [recorded[source][0] for source in inbound]
        output_grads = a.output_gradients([name])[name]
        a_inputs, a_weights = a.layer_backward(name, inputs, output_grads)
        b_inputs, b_weights = b.layer_backward(pair.b["name"], inputs, output_grads)
    except WorkerFailure as failure:
        if not session.pool.all_alive():
            raise
        return f"could not be run alone: {failure.message}"
    tolerances = as_tolerances(session.tolerances)
    if len(a_inputs) != len(b_inputs) or len(a_weights) != len(b_weights):
        return "the two sides' layers take or hold different numbers of arrays"
    fan = sum(g.size for g in output_grads) / max(1, sum(x.size for x in inputs))
    tolerance = tolerances.backward_alone(name, fan)
    maps = session.weight_maps.get(name) or [None] * len(a_weights)
    summed = [tolerances.backward_alone(name, 1.0, terms_per_weight(output_grads, x)) for _, x in a_weights]
    judged = _judged_all(a_inputs, b_inputs, a_weights, b_weights, maps, tolerance, summed, None)
    if not judged.matches:  # within what side A's own backward moves by, for a change its forward allows?
        spread = own_spread(a, name, inputs, output_grads, tolerances.backward_alone(name).rtol, (a_inputs, a_weights))
        if spread is not None:
            judged = _judged_all(a_inputs, b_inputs, a_weights, b_weights, maps, tolerance, summed, spread)
    return judged


def _judged_all(a_inputs, b_inputs, a_weights, b_weights, maps, tolerance, summed, spread) -> BackwardAlone:
    input_spread, weight_spread = spread if spread is not None else ([None] * len(a_inputs), [None] * len(a_weights))
    parts = [_judged(x, y, tolerance, s) for x, y, s in zip(a_inputs, b_inputs, input_spread)]
    input_diff = next((p for p in parts if isinstance(p, str)), None) or (combine(parts) if parts else "no inputs")
    weights = []
    for (weight, x), (_, y), element_map, weight_tolerance, s in zip(a_weights, b_weights, maps, summed, weight_spread):
        if element_map is not None:
            x, y, s = element_map(x), element_map.part_of_b(y), None
        weights.append((weight, _judged(x, y, weight_tolerance, s)))
    return BackwardAlone(input_diff, tuple(weights))


SPREAD_FACTOR = 2.0  # times side A's own spread under an input change the forward's tolerance allows
SPREAD_SEED = 0


def own_spread(a, name: str, inputs: list, output_grads: list, rtol: float, first: tuple) -> tuple[list, list] | None:
    """How far side A's own backward of the layer moves when its inputs and its output gradient change by
    what the layer's tolerance allows (each float element times 1 + rtol·u, u uniform in [-1, 1], seeded): the
    largest change of each input gradient and of each weight gradient. Two honest differences of a backward
    run alone grow far beyond its own arithmetic's relative rounding, and this measures both on side A, the
    reference (``first``: its backward on the arrays as they are):
    - each side recomputes the layer's forward, whose rounding the backward can amplify (a saturated softmax:
      its gradient a small difference of larger terms, its probabilities sensitive to the logits' rounding);
    - a weight's gradient is a sum over the batch and positions, whose rounding is a fraction of the terms'
      sizes, not of the sum's: where they cancel (a bias's gradient of a few samples of either sign) the sum
      is much smaller than they are.
    None where it cannot be run."""
    rng = np.random.default_rng(SPREAD_SEED)

    def moved(arrays: list) -> list:
        return [(x * (1 + rtol * rng.uniform(-1, 1, x.shape))).astype(x.dtype)
                if np.issubdtype(x.dtype, np.floating) else x for x in arrays]

    try:
        again_inputs, again_weights = a.layer_backward(name, moved(inputs), moved(output_grads))
    except WorkerFailure:
        return None
    first_inputs, first_weights = first

    def change(x, y):
        return float(np.max(np.abs(np.asarray(x, np.float64) - y))) if x.shape == y.shape and x.size else 0.0
    return ([change(x, y) for x, y in zip(first_inputs, again_inputs)],
            [change(x, y) for (_, x), (_, y) in zip(first_weights, again_weights)])


def _judged(x: np.ndarray, y: np.ndarray, tolerance, spread: float | None) -> LayerMetrics | str:
    """compare_gradient, with an absolute allowance of SPREAD_FACTOR times side A's own spread (own_spread)
    where that is larger than the tolerance's own atol."""
    if spread is None or x.shape != y.shape:
        return compare_gradient(x, y, tolerance)
    measured = Measured(x, y)
    judged = gradient_tolerance_at(tolerance, max(measured.scale_a, measured.scale_b))
    allowance = SPREAD_FACTOR * spread
    if allowance <= judged.atol:
        return measured.judged(judged)
    return measured.judged(replace(judged, atol=allowance, reason=f"{tolerance.reason}; atol {SPREAD_FACTOR:g}x side "
                                   "A's own spread when its inputs move within the forward's tolerance"))


def _weights_differ(grad) -> bool:
    return any(not (isinstance(m, LayerMetrics) and m.matches) for _, m in grad.weights)


def _output_matches(grad) -> bool:
    return isinstance(grad.output, LayerMetrics) and grad.output.matches
