"""Max pooling's gradient where a window holds its maximum more than once (a ReLU's zeros, most
often): frameworks route it otherwise (Theano to every tied maximum, TensorFlow, JAX and PyTorch to
one), so the output gradient of the layer feeding the pooling differs while every value matches.
Where that is all that differs, kdiff proves it: both sides' gradients at the pooling's output,
routed back by one rule over each side's own values, match. The layer's gradient is then judged
as so routed, and the routing is a finding of its own ('maxpool-tied-maxima')."""
from __future__ import annotations

import itertools
from dataclasses import dataclass, replace

import numpy as np

from kdiff.diagnosis.model import ErrorSize, Finding
from kdiff.errors import WorkerFailure
from kdiff.gradients import GradientComparison, GradientDiff, compare_gradient, output_layers
from kdiff.metrics import LayerMetrics
from kdiff.protocol import vocabulary as v
from kdiff.report import MATCH
from kdiff.streams import stream_pairs

CAUSE = "maxpool-tied-maxima"
POOLS = {"MaxPooling1D": 1, "MaxPooling2D": 2, "MaxPooling3D": 3}
RULES = ("every tied maximum", "the first maximum")


@dataclass(frozen=True)
class TiedCase:
    layer: object        # the LayerResult whose output gradient differs
    pool: object         # the LayerResult of the MaxPooling it feeds
    pool_config: dict


def suspects(session, layers) -> list[TiedCase]:
    """Layers whose outputs match, whose output gradient does not, and whose output goes only into a
    'valid' MaxPooling whose own output gradient matches."""
    by_name = {layer.name: layer for layer in layers}
    found = []
    for layer in layers:
        grad = layer.grad
        if layer.status != MATCH or grad is None or not isinstance(grad.output, LayerMetrics) or grad.output.matches:
            continue
        cut = session.pair_of(layer.name).cut("a")
        consumers = [other for other in layers if cut in other.inbound]
        if len(consumers) != 1 or consumers[0].class_name not in POOLS or consumers[0].status != MATCH:
            continue
        pool = by_name[consumers[0].name]
        if pool.grad is None or not isinstance(pool.grad.output, LayerMetrics) or not pool.grad.output.matches:
            continue
        config = session.clients["a"].layer_config(pool.name)
        if str(config.get("padding", config.get("border_mode", "valid"))).lower() != "valid":
            continue
        found.append(TiedCase(layer, pool, config))
    return found


def explain(session, inputs, forward, layers) -> tuple[list, list[Finding]]:
    """The layers, those whose gradient differs only by the routing of tied maxima judged as routed by
    one rule, and a finding for each (proven); the layers as they were where none is."""
    cases = suspects(session, layers)
    if not cases:
        return list(layers), []
    try:
        captured = _gradients(session, inputs, forward, cases)
        values = {side: session.clients[side].outputs([session.pair_of(case.layer.name).cut(side) for case in cases])
                  for side in "ab"}
    except WorkerFailure:
        if not session.pool.all_alive():
            raise
        return list(layers), []  # the comparison stands without the explanation
    layers, findings = list(layers), []
    for case in cases:
        pair, pool_pair = session.pair_of(case.layer.name), session.pair_of(case.pool.name)
        x = {side: values[side][pair.cut(side)][0] for side in "ab"}  # (side B's client gives A's layout)
        g_pool = {side: captured[(side, pool_pair.cut(side))][0] for side in "ab"}
        g_layer = {side: captured[(side, pair.cut(side))][0] for side in "ab"}
        finding, after = _prove(session, case, x, g_pool, g_layer)
        if finding is None:
            continue
        findings.append(finding)
        index = next(i for i, layer in enumerate(layers) if layer.name == case.layer.name)
        note = (f"its output gradient differs only where {case.pool.name}'s windows hold tied maxima; routed "
                f"by one rule it matches ({CAUSE})")
        layers[index] = replace(layers[index], grad=GradientDiff(after, layers[index].grad.weights),
                                note="; ".join(filter(None, [layers[index].note, note])))
    return layers, findings


def _gradients(session, inputs, forward, cases) -> dict:
    """Both sides' output gradients at the suspects and their poolings, from one more backward pass
    (the same projections, or loss, as the comparison's)."""
    wanted = {(side, session.pair_of(layer.name).cut(side)) for case in cases for layer in (case.layer, case.pool)
              for side in "ab"}
    shapes = [forward.shapes[("a", name)][0] for name in output_layers(session.a_layers)]
    comparison = GradientComparison(session.pairs, inputs, shapes, session.tolerances, session.weight_maps,
                                    session.bridge, session.named_loss)
    captured = {}

    def on_part(side, header, part):
        layer = header.get("layer")
        if (side, layer) in wanted:
            outputs = v.unpack(part, v.OUTPUT_GRADIENTS)
            captured[(side, layer)] = session.bridge.to_a(layer, outputs) if side == "b" else outputs
        return None

    stream_pairs(session.pool, session.pairs, "backward", comparison.arrays, session.options.timeouts.call,
                 on_part, lambda *_: None, b_arrays=comparison.b_arrays, args=comparison.args)
    return captured


def _prove(session, case, x: dict, g_pool: dict, g_layer: dict) -> tuple[Finding | None, LayerMetrics | None]:
    spatial = POOLS[case.pool.class_name]
    config = case.pool_config
    size = _per_axis(config.get("pool_size", config.get("pool_length", 2)), spatial)
    strides = _per_axis(config.get("strides") or config.get("stride") or size, spatial)
    channels_first = config.get("data_format", config.get("dim_ordering")) in ("channels_first", "th")
    tolerance = session.tolerances.gradient(case.layer.name)
    routed = {}
    for side in "ab":
        routed[side] = [_route(x[side], g_pool[side], size, strides, channels_first, rule) for rule in RULES]
        if routed[side][0] is None:
            return None, None
    rules = {}
    for side in "ab":  # which rule each side's own gradient follows
        for rule, candidate in zip(RULES, routed[side]):
            if _matches(compare_gradient(g_layer[side], candidate, tolerance)):
                rules[side] = rule
                break
    if len(rules) != 2 or rules["a"] == rules["b"]:
        return None, None
    chosen = RULES.index(rules["b"])
    after = compare_gradient(routed["a"][chosen], routed["b"][chosen], tolerance)
    if not _matches(after):
        return None, None
    before = case.layer.grad.output
    ties = _tied_windows(x["a"], size, strides, channels_first)
    names = [info.name for info in session.backend_infos()]
    return Finding(
        cause=CAUSE, layer=case.layer.name, verified=True, before=ErrorSize(before.max_abs, before.max_rel),
        after=ErrorSize(after.max_abs, after.max_rel),
        fix=(f"Nothing to fix: {case.pool.name}'s windows hold their maximum more than once in {ties} place(s) "
             f"(a ReLU's zeros, say), and {names[0]} routes the gradient to {rules['a']} while {names[1]} routes "
             f"it to {rules['b']}. Where maxima tie, max is not differentiable and both are valid choices; routed "
             f"by one rule the two sides' gradients of '{case.layer.name}' match."),
        code=(f"# {case.layer.name} -> {case.pool.name}: compare such gradients after routing both by one rule, or "
              "feed inputs without ties (no exact zeros) where the gradients themselves must agree"),
        detail={"pooling": case.pool.name, "tied_windows": ties, "routes": {"a": rules["a"], "b": rules["b"]}},
    ), after


def _matches(metrics) -> bool:
    return isinstance(metrics, LayerMetrics) and metrics.matches


def _per_axis(value, count: int) -> list[int]:
    return [int(v) for v in value] if isinstance(value, (list, tuple)) else [int(value)] * count


def _windows(x: np.ndarray, size, strides, channels_first: bool):
    """(output index, window slices) of a 'valid' pooling over the spatial axes of x (batch first)."""
    spatial_axes = list(range(2, x.ndim)) if channels_first else list(range(1, x.ndim - 1))
    counts = [(x.shape[axis] - k) // s + 1 for axis, k, s in zip(spatial_axes, size, strides)]
    if any(c <= 0 for c in counts):
        return spatial_axes, counts, []
    return spatial_axes, counts, list(itertools.product(*(range(c) for c in counts)))


def _route(x, g_out, size, strides, channels_first, rule) -> np.ndarray | None:
    """The gradient with respect to the pooling's input: each output's gradient sent to every tied
    maximum of its window, or to the first (in row-major order of the window)."""
    spatial_axes, counts, positions = _windows(x, size, strides, channels_first)
    if len(spatial_axes) != len(size) or not positions:
        return None
    moved_x = np.moveaxis(x, spatial_axes, range(x.ndim - len(size), x.ndim)).astype(np.float64)  # (N, C, *spatial)
    moved_g = np.moveaxis(g_out, spatial_axes, range(x.ndim - len(size), x.ndim)).astype(np.float64)
    if tuple(moved_g.shape[-len(size):]) != tuple(counts):
        return None
    grad = np.zeros_like(moved_x)
    for position in positions:
        where = tuple(slice(p * s, p * s + k) for p, s, k in zip(position, strides, size))
        window = moved_x[(..., *where)]
        flat = window.reshape(*window.shape[:-len(size)], -1)
        top = flat.max(axis=-1, keepdims=True)
        if rule == RULES[0]:
            mask = flat == top
        else:
            mask = np.zeros_like(flat, dtype=bool)
            np.put_along_axis(mask, flat.argmax(axis=-1)[..., None], True, axis=-1)
        g = moved_g[(..., *position)][..., None]
        grad[(..., *where)] += (mask * g).reshape(window.shape)
    return np.moveaxis(grad, range(x.ndim - len(size), x.ndim), spatial_axes)


def _tied_windows(x, size, strides, channels_first) -> int:
    spatial_axes, _, positions = _windows(x, size, strides, channels_first)
    moved = np.moveaxis(x, spatial_axes, range(x.ndim - len(size), x.ndim))
    ties = 0
    for position in positions:
        where = tuple(slice(p * s, p * s + k) for p, s, k in zip(position, strides, size))
        flat = moved[(..., *where)].reshape(*moved.shape[:-len(size)], -1)
        ties += int(((flat == flat.max(axis=-1, keepdims=True)).sum(axis=-1) > 1).sum())
    return ties
