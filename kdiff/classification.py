"""Classification, a pure function: what the passes found for each layer pair (one LayerRecord
each) -> each layer's status, in order. A layer that does not match is where a divergence
starts ('diverged') when every layer feeding it matched, else it only carries one
('propagated'). Where the layer was also run in isolation, that decides: its own computation
differs ('diverged'), or it only receives other inputs ('propagated'); and a layer whose inputs
match and which matches alone matches, however far the rounding its inputs carry takes its
whole-model output past its tolerance (deep models: the rounding of forty layers adds up)."""
from __future__ import annotations

from dataclasses import dataclass

from kdiff.alignment import LayerPair
from kdiff.metrics import LayerMetrics, Tolerance
from kdiff.report import DIVERGED, MATCH, ONLY_A, ONLY_B, PROPAGATED, LayerResult


@dataclass(frozen=True)
class LayerRecord:
    """Everything the passes found for one layer pair."""
    pair: LayerPair
    outcome: LayerMetrics | str | None = None  # the forward metrics, or why not compared; None: nothing came back
    a_shapes: tuple | None = None              # the output shapes each side gave
    b_shapes: tuple | None = None
    tolerance: Tolerance | None = None         # what the forward comparison was judged by
    gradient: object = None                    # kdiff.gradients.GradientDiff, when gradients were compared
    isolated: LayerMetrics | str | None = None  # side B's layer run alone on side A's inputs (--isolate)
    layout: str = ""                           # how side B's arrays were moved to side A's layout, if they were


def layer_records(pairs: list[LayerPair], metrics: dict, used: dict, shapes: dict, gradients: dict,
                  isolated: dict, layout_note=lambda b_name: "") -> list[LayerRecord]:
    """The stages' results (keyed by side A's layer name; shapes by (side, name)) joined per pair."""
    records = []
    for pair in pairs:
        if pair.a is None or pair.b is None:
            records.append(LayerRecord(pair, a_shapes=shapes.get(("a", pair.a["name"])) if pair.a else None,
                                       b_shapes=shapes.get(("b", pair.b["name"])) if pair.b else None))
            continue
        name = pair.a["name"]
        records.append(LayerRecord(pair, metrics.get(name), shapes.get(("a", pair.cut("a"))),
                                   shapes.get(("b", pair.cut("b"))), used.get(name), gradients.get(name),
                                   isolated.get(name), layout_note(pair.cut("b"))))
    return records


def classify(records: list[LayerRecord]) -> list[LayerResult]:
    status_of: dict[str, str] = {}
    results = []
    for record in records:
        pair = record.pair
        if pair.a is None or pair.b is None:
            present = pair.a or pair.b
            side = "a" if pair.a is not None else "b"
            status = ONLY_A if side == "a" else ONLY_B
            results.append(LayerResult(
                name=present["name"], class_name=present["class_name"], status=status,
                a_shape=_first(record.a_shapes), b_shape=_first(record.b_shapes),
                inbound=tuple(present.get("inbound", ())), note=f"present on side {side.upper()} only"))
            status_of[present["name"]] = status
            continue
        name = pair.a["name"]
        outcome, alone = record.outcome, record.isolated
        inbound = pair.inbound("a")
        inputs_match = all(status_of.get(source) == MATCH for source in inbound if not source.startswith("input:"))
        layer_metrics = outcome if isinstance(outcome, LayerMetrics) else None
        note = outcome if isinstance(outcome, str) else ("no output came back" if outcome is None else "")
        if layer_metrics is not None and layer_metrics.matches:
            status = MATCH
        elif (isinstance(alone, LayerMetrics) and alone.matches and inputs_match and layer_metrics is not None
              and same_non_finite(layer_metrics)):
            status, note = MATCH, carried_noise_note(layer_metrics, record.tolerance, alone)
        elif isinstance(alone, LayerMetrics) and alone.matches and inputs_match and layer_metrics is not None:
            status, note = DIVERGED, non_finite_note(layer_metrics)
        elif isinstance(alone, LayerMetrics):
            status = PROPAGATED if alone.matches else DIVERGED
        else:
            status = DIVERGED if inputs_match else PROPAGATED
        status_of[name] = status_of[pair.cut("a")] = status
        results.append(LayerResult(
            name=name, class_name=pair.a["class_name"], b_class_name=pair.b["class_name"],
            a_shape=_first(record.a_shapes), b_shape=_first(record.b_shapes),
            status=status, metrics=layer_metrics, grad=record.gradient, isolated=alone,
            b_name=pair.b["name"] if pair.b["name"] != name else "",
            aligned_by=pair.aligned_by, inbound=inbound, note=note, layout=record.layout, tolerance=record.tolerance,
            a_members=pair.chain("a") if len(pair.chain("a")) > 1 else (),
            b_members=pair.chain("b") if len(pair.chain("b")) > 1 else ()))
    return results


def same_non_finite(metrics: LayerMetrics) -> bool:
    """Whether both sides hold as many NaN and Inf values: a NaN or Inf on one side only is no rounding
    that inputs carry, whatever the layer gives when run alone (a framework may fuse it in the whole
    model and handle NaN otherwise there)."""
    return metrics.nan_a == metrics.nan_b and metrics.inf_a == metrics.inf_b


def non_finite_note(whole: LayerMetrics) -> str:
    return (f"in the whole model side A has {whole.nan_a} NaN and {whole.inf_a} Inf, side B {whole.nan_b} NaN and "
            f"{whole.inf_b} Inf; alone on side A's inputs it matches, so the framework handles them otherwise "
            "inside the model (a fused kernel, say)")


def carried_noise_note(whole: LayerMetrics, tolerance: Tolerance | None, alone: LayerMetrics) -> str:
    """Why a layer out of its whole-model tolerance still matches: the float noise its inputs carry."""
    allowed = f" > atol {tolerance.atol:.3g}, rtol {tolerance.rtol:.3g}" if tolerance is not None else ""
    return (f"in the whole model it differs by max abs {whole.max_abs:.3g}, max rel {whole.max_rel:.3g}{allowed}, "
            f"only by the rounding its inputs carry: alone on side A's inputs it matches (max rel {alone.max_rel:.3g})")


def _first(shapes: tuple | None) -> tuple | None:
    return shapes[0] if shapes else None
