"""Collecting what the rules need about one diverging layer, from both workers."""
from __future__ import annotations

import numpy as np

from kdiff.alignment import LayerPair
from kdiff.isolation import run_chain
from kdiff.diagnosis.model import Candidate, ErrorSize, LayerEvidence, Unexplained
from kdiff.metrics import LayerMetrics, Tolerance, compare_arrays
from kdiff.tolerances import Tolerances, as_tolerances, judge_layer
from kdiff.worker_calls import SideClient


def gather(pair: LayerPair, a_layers: dict[str, dict], a: SideClient, b: SideClient,
           b_framework: tuple = ("", {})) -> LayerEvidence:
    """Side A's inputs and outputs of the layer (from A's last forward pass), both sides' weights and
    configs; for a group (kdiff.alignment), A's inputs to it and outputs of its cut, and its other
    layers' configs."""
    name, b_name = pair.a["name"], pair.b["name"]
    inbound = list(pair.inbound("a"))
    recorded = a.outputs(inbound + [pair.cut("a")])
    feeding = [a_layers.get(source) for source in inbound]

    def group(side: str, client: SideClient, own: str) -> tuple:
        return tuple((member["name"], member["class_name"], client.layer_config(member["name"]))
                     for member in pair.members(side) if member["name"] != own)

    return LayerEvidence(
        layer=name, b_layer=b_name, class_name=pair.b["class_name"],
        a_inputs=tuple(recorded[source][0] for source in inbound),
        a_outputs=tuple(recorded[pair.cut("a")]),
        b_weights=tuple(b.weights(b_name)), a_weights=tuple(a.weights(name)),
        input_shapes=tuple(tuple(d["output_shapes"][0]) if d else None for d in feeding),
        feeding_classes=tuple(d["class_name"] if d else "input" for d in feeding),
        feeding_input_shapes=tuple(_input_shape_of(d, a_layers, recorded) for d in feeding if d),
        a_config=a.layer_config(name), b_config=b.layer_config(b_name),
        a_chain=pair.chain("a") if pair.grouped else (), b_chain=pair.chain("b") if pair.grouped else (),
        a_group=group("a", a, name), b_group=group("b", b, b_name),
        a_group_weights=tuple((member["name"], tuple(a.weights(member["name"]))) for member in pair.members("a")
                              if member["name"] != name and pair.grouped),
        b_backend=b_framework[0], b_versions=dict(b_framework[1]),
    )


def _input_shape_of(layer: dict, a_layers: dict[str, dict], recorded: dict) -> tuple | None:
    sources = layer.get("inbound") or []
    if not sources:
        return None
    source = sources[0]
    if source in a_layers:
        return tuple(a_layers[source]["output_shapes"][0])
    if source in recorded:
        return (None, *recorded[source][0].shape[1:])
    return None


def isolated_error(b: SideClient, evidence: LayerEvidence, tolerance: Tolerance | Tolerances,
                   candidate: Candidate | None = None) -> LayerMetrics:
    """Side B's layer run alone on side A's inputs, against side A's output, judged by the layer's
    own tolerance; with the candidate's config change when one is given (a change of weights alone
    must already be set on side B)."""
    changed = None
    if candidate is not None and candidate.changes_config:
        weights = None if candidate.b_weights is None else list(candidate.b_weights)
        changed = {candidate.layer or evidence.b_layer: (candidate.overrides, candidate.training, weights)}
    outputs = run_chain(b, evidence.chain("b"), list(evidence.a_inputs), changed)
    if len(outputs) != len(evidence.a_outputs) or any(o.shape != e.shape for o, e in zip(outputs, evidence.a_outputs)):
        raise ValueError(f"{' -> '.join(evidence.chain('b'))} gives outputs of shapes {[o.shape for o in outputs]} "
                         f"on side B, {[e.shape for e in evidence.a_outputs]} on side A")
    return judge_layer(as_tolerances(tolerance).isolated(evidence.layer), evidence.a_outputs, outputs)[0]


def describe_unexplained(b: SideClient, evidence: LayerEvidence, tolerance: Tolerance | Tolerances,
                         b_inputs: list[np.ndarray]) -> Unexplained:
    """Where the error of side B's layer sits, for a divergence no rule explains."""
    outputs = run_chain(b, evidence.chain("b"), list(evidence.a_inputs))
    isolated, judged = judge_layer(as_tolerances(tolerance).isolated(evidence.layer), evidence.a_outputs, outputs)
    input_error = max((compare_arrays(x, y, judged).max_rel for x, y in zip(evidence.a_inputs, b_inputs)
                       if x.shape == y.shape), default=0.0)
    error = np.abs(np.asarray(evidence.a_outputs[0], np.float64) - outputs[0])
    worst = []
    for axis in range(1, error.ndim):  # per position along every non-batch axis
        profile = error.max(axis=tuple(i for i in range(error.ndim) if i != axis))
        index = int(profile.argmax())
        worst.append((axis, index, float(profile[index])))
    worst.sort(key=lambda entry: -entry[2])
    return Unexplained(layer=evidence.layer, class_name=evidence.class_name,
                       isolated=ErrorSize(isolated.max_abs, isolated.max_rel), input_error=input_error,
                       worst_positions=tuple(worst[:3]))
