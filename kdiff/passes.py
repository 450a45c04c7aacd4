"""The forward and backward stages of a diff: both sides run the sample, and every layer pair's
outputs (and gradients) are compared as the two streams of results arrive. Each stage returns
plain data; kdiff.comparison joins it into one record per layer pair."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kdiff.dump import NpzWriter
from kdiff.errors import WorkerFailure
from kdiff.gradients import GradientComparison, GradientDiff, backward_and_compare, output_layers
from kdiff.metrics import LayerMetrics, Tolerance
from kdiff.model_inputs import ModelInputs
from kdiff.protocol.vocabulary import unpack
from kdiff.streams import stream_pairs
from kdiff.tolerances import judge_layer


@dataclass(frozen=True)
class ForwardPass:
    """Keyed by side A's layer name: the metrics (or why the layer was not compared) and the
    tolerance it was judged by; and every layer's output shapes by (side, name) as each side gave them."""
    metrics: dict
    used: dict
    shapes: dict


@dataclass(frozen=True)
class GradientPass:
    """Keyed by side A's layer name: the gradient differences; and why gradients were not compared, if not."""
    gradients: dict
    notes: tuple = ()


def forward_pass(session, inputs: ModelInputs, fused: GradientComparison | None = None) -> ForwardPass:
    """Both sides run ``inputs``; side B's outputs are moved to side A's layout before they are
    compared (the dump holds them as B's worker gave them). Each layer is judged by its forward rule
    in the session's tolerances.

    With ``fused``, both sides run forward and backward in one call, from one pass of the model
    where their framework allows ('forward_backward'), and the gradients are compared into
    ``fused.results`` as they arrive; a side that cannot differentiate the model leaves the
    forward diff standing and its message in ``fused.failure``."""
    pool, pairs, options, bridge, tolerances = (session.pool, session.pairs, session.options, session.bridge,
                                                session.tolerances)
    dumps = {side: NpzWriter(Path(options.dump_dir) / f"{side}.npz") for side in "ab"} if options.dump_dir else {}
    metrics: dict[str, LayerMetrics | str] = {}
    used: dict[str, Tolerance] = {}
    shapes: dict[tuple[str, str], tuple] = {}
    total = sum(1 for pair in pairs if pair.a is not None and pair.b is not None)

    def on_part(side: str, header: dict, arrays: dict) -> list:
        layer = header.get("layer")
        outputs = unpack(arrays)
        shapes[(side, layer)] = tuple(tuple(out.shape) for out in outputs)
        if side in dumps:
            for i, out in enumerate(outputs):
                dumps[side].add(layer if i == 0 else f"{layer}:{i}", out)
        return bridge.to_a(layer, outputs) if side == "b" else outputs

    def on_pair(a_layer: str, a_outputs: list, b_outputs: list) -> None:
        metrics[a_layer], used[a_layer] = compare_outputs(a_outputs, b_outputs, tolerances.forward(a_layer))
        session.progress.layer_done(len(metrics), total)

    def on_either_part(side: str, header: dict, arrays: dict) -> tuple:
        gradient = header.get("kind") == "gradient"
        return gradient, (fused.on_part if gradient else on_part)(side, header, arrays)

    def on_either_merge(cut_kept: tuple, own_kept: tuple) -> tuple:
        gradient, value = cut_kept
        return (gradient, fused.merge(value, own_kept[1])) if gradient else cut_kept

    def on_either_pair(a_layer: str, a_kept: tuple, b_kept: tuple) -> None:
        (gradient, a_value), (_, b_value) = a_kept, b_kept
        (fused.on_pair if gradient else on_pair)(a_layer, a_value, b_value)

    try:
        if fused is None:
            stream_pairs(pool, pairs, "forward", inputs.pack("a"), options.timeouts.call, on_part, on_pair,
                         b_arrays=inputs.pack("b"))
        else:
            try:
                stream_pairs(pool, pairs, "forward_backward", fused.arrays, options.timeouts.call,
                             on_either_part, on_either_pair, b_arrays=fused.b_arrays, args=fused.args,
                             merge=on_either_merge)
            except WorkerFailure as failure:
                if len(metrics) < total or not pool.all_alive():
                    raise
                fused.failure = failure.message  # the framework could not differentiate this model
    finally:
        for writer in dumps.values():
            writer.close()
    return ForwardPass(metrics, used, shapes)


def compare_outputs(a_out: list, b_out: list, rule) -> tuple[LayerMetrics | str, Tolerance]:
    """A layer's metrics (or why it was not compared) and the tolerance it was judged by (``rule``'s)."""
    if len(a_out) != len(b_out):
        return f"{len(a_out)} output(s) on side A, {len(b_out)} on side B", rule.on(a_out, b_out)
    if any(x.shape != y.shape for x, y in zip(a_out, b_out)):
        return "output shapes differ", rule.on(a_out, b_out)
    return judge_layer(rule, a_out, b_out)


def fused_gradients(session, inputs: ModelInputs) -> GradientComparison | None:
    """A gradient comparison to run with the forward pass, when the model outputs' shapes are known
    before it (both sides declared them in full at load, and they agree in side A's layout)."""
    declared = declared_output_shapes(session, inputs.batch)
    if declared is None:
        return None
    return GradientComparison(session.pairs, inputs, declared, session.tolerances, session.weight_maps,
                              session.bridge, session.named_loss)


def gradient_pass(session, inputs: ModelInputs, forward: ForwardPass,
                  fused: GradientComparison | None) -> GradientPass:
    """The gradient differences: those the forward_backward pass gave (``fused``), or a backward
    pass's now (the output shapes were not known in advance, or not those declared)."""
    outputs = [forward.shapes.get(("a", name)) for name in output_layers(session.a_layers)]
    if fused is not None and fused.failure is not None:
        return GradientPass({}, (f"gradients were not compared: {_shortened(fused.failure)}",))
    if fused is not None and [o and o[0] for o in outputs] == fused.output_shapes:
        return GradientPass(_with_weight_maps(session, inputs, fused.output_shapes, _matching(forward), fused.results))
    bridge = session.bridge
    b_outputs = [tuple(bridge.shape_to_a(name, s) for s in forward.shapes[("b", name)])
                 if ("b", name) in forward.shapes else None for name in output_layers(session.b_layers)]
    if None in outputs or [o[0] for o in outputs] != [o[0] for o in b_outputs if o]:
        return GradientPass({}, ("gradients were not compared: the two models' outputs differ in shape",))
    session.progress.stage("differentiating both models")
    try:
        return GradientPass(_with_weight_maps(session, inputs, [o[0] for o in outputs], _matching(forward)))
    except WorkerFailure as failure:
        if not session.pool.all_alive():
            raise
        # the framework could not differentiate this model; the forward diff still stands
        return GradientPass({}, (f"gradients were not compared: {_shortened(failure.message)}",))


def declared_output_shapes(session, batch: int) -> list[tuple] | None:
    """The model outputs' shapes for this batch as both sides declared them at load, when they are
    known in full and agree (in side A's layout): the projections can then go out with the input."""
    found = {}
    for side, layers in (("a", session.a_layers), ("b", session.b_layers)):
        found[side] = []
        for name in output_layers(layers):
            declared = (layers[name].get("output_shapes") or [None])[0]
            if not declared or any(d is None for d in declared[1:]):
                return None
            shape = (batch, *(int(d) for d in declared[1:]))
            found[side].append(tuple(session.bridge.shape_to_a(name, shape)) if side == "b" else shape)
    return found["a"] if found["a"] == found["b"] else None


def _matching(forward: ForwardPass) -> set[str]:
    return {name for name, metrics in forward.metrics.items() if isinstance(metrics, LayerMetrics) and metrics.matches}


def _with_weight_maps(session, inputs: ModelInputs, output_shapes: list[tuple], forward_matching: set[str],
                      first: dict | None = None) -> dict[str, GradientDiff]:
    """The gradient differences (``first`` when a forward_backward pass already gave them); where side B
    holds a weight reordered and kdiff did not know it yet (its shape differs; or a layer whose outputs
    match has weight gradients that do not), found out and compared again."""
    def backward() -> dict:
        return backward_and_compare(session.pool, session.pairs, inputs, output_shapes, session.tolerances,
                                    session.options.timeouts.call, session.weight_maps, session.bridge,
                                    session.named_loss)

    grads = first if first is not None else backward()
    reordered = [layer for layer, diff in grads.items() if layer not in session.weight_maps and any(
        isinstance(m, str) and m.startswith("shapes differ")
        or layer in forward_matching and isinstance(m, LayerMetrics) and not m.matches for _, m in diff.weights)]
    if not reordered:
        return grads
    # e.g. a Keras 1 'th' kernel, held (rows, cols, in, out) by side B; a right port's Dense rows permuted
    session.refresh_weight_maps(reordered)
    if not any(m is not None for layer in reordered for m in session.weight_maps.get(layer) or ()):
        return grads  # the weights differ in value, not in order: their gradients are compared as they are
    return backward()


NOTE_CHARACTERS = 600


def _shortened(message: str) -> str:
    """A framework's message as a note: its first NOTE_CHARACTERS characters (TensorFlow's can hold whole
    arrays); the worker's log has all of it."""
    message = str(message)
    return message if len(message) <= NOTE_CHARACTERS else message[:NOTE_CHARACTERS].rstrip() + " …"
