"""Per-layer isolation: side B's layer run alone on side A's inputs to it (taken from A's last
forward pass), against A's output. Each layer then gets its own error, free of what came before."""
from __future__ import annotations

from kdiff.alignment import LayerPair
from kdiff.errors import WorkerFailure
from kdiff.metrics import LayerMetrics, Tolerance
from kdiff.tolerances import Tolerances, as_tolerances, judge_layer
from kdiff.worker_calls import SideClient


def isolate_layers(pairs: list[LayerPair], a: SideClient, b: SideClient, tolerance: Tolerance | Tolerances,
                   progress) -> dict[str, LayerMetrics | str]:
    """Isolated error keyed by side A's layer name (a string says why a layer was not isolated); each
    layer is judged by its own arithmetic's tolerance, its inputs being the same on both sides."""
    tolerances = as_tolerances(tolerance)
    results: dict[str, LayerMetrics | str] = {}
    both = [pair for pair in pairs if pair.a is not None and pair.b is not None]
    for done, pair in enumerate(both, 1):
        name, inbound, cut = pair.a["name"], list(pair.inbound("a")), pair.cut("a")
        if any(member.get("masked") for side in "ab" for member in pair.members(side)):
            results[name] = "fed a mask: run alone, it would get none"  # the comparison stands without it
            progress.layer_done(done, len(both))
            continue
        try:
            recorded = a.outputs(inbound + [cut])
            inputs = [recorded[source][0] for source in inbound]
            outputs = run_chain(b, pair.chain("b"), inputs)
        except WorkerFailure as failure:
            if not b.pool.all_alive():
                raise
            results[name] = f"could not be run alone: {failure.message}"  # the comparison stands without it
            progress.layer_done(done, len(both))
            continue
        expected = recorded[cut]
        if len(outputs) != len(expected) or any(x.shape != y.shape for x, y in zip(expected, outputs)):
            results[name] = "side B's layer gives outputs of other shapes on side A's inputs"
        else:
            results[name] = judge_layer(tolerances.isolated(name), expected, outputs)[0]
        progress.layer_done(done, len(both))
    return results


def run_chain(b: SideClient, chain: tuple[str, ...], inputs: list, changed: dict | None = None) -> list:
    """Side B's layers of a group (kdiff.alignment), each on the last one's outputs; ``changed``
    (layer -> (overrides, training, weights)) runs those layers with a change, not kept."""
    outputs = list(inputs)
    for layer in chain:
        if changed and layer in changed:
            overrides, training, weights = changed[layer]
            outputs = b.run_layer_changed(layer, outputs, overrides, training, weights)
        else:
            outputs = b.run_layer(layer, outputs)
    return outputs


MAX_SETTLE_ROUNDS = 8


def settle_by_isolation(records: list, a: SideClient, b: SideClient, tolerance: Tolerance | Tolerances,
                        progress) -> tuple[list, list]:
    """Records and their classification, with every layer where a divergence seems to start run
    alone: a layer out of its whole-model tolerance while every layer feeding it matches either
    computes otherwise (it stays 'diverged') or only carries, amplified, the rounding its inputs
    bring, which grows with depth (it matches; kdiff.classification). Where one does, the layers
    after it that do not match are likely to carry the same noise, and are run alone in the same
    round: a deep model settles in one or two rounds, not one per layer. Layers after a real
    divergence are not run (they only propagate it)."""
    from dataclasses import replace

    from kdiff.classification import classify
    from kdiff.report import DIVERGED, MATCH

    results = classify(records)
    for _ in range(MAX_SETTLE_ROUNDS):
        index_of = {record.pair.a["name"]: i for i, record in enumerate(records) if record.pair.a is not None}
        starts = [record.pair for record, result in zip(records, results)
                  if result.status == DIVERGED and record.isolated is None and record.pair.b is not None]
        if not starts:
            break
        progress.stage(f"running {len(starts)} layer(s) of side B alone on side A's inputs: own difference, or noise?")
        isolated = isolate_layers(starts, a, b, tolerance, progress)
        carried = {name for name, own in isolated.items() if isinstance(own, LayerMetrics) and own.matches}
        if carried:
            first = min(index_of[name] for name in carried)
            later = [record.pair for record, result in zip(records[first + 1:], results[first + 1:])
                     if result.status != MATCH and record.isolated is None and record.pair.a is not None
                     and record.pair.b is not None and record.pair.a["name"] not in isolated]
            if later:
                isolated.update(isolate_layers(later, a, b, tolerance, progress))
        records = [replace(record, isolated=isolated[record.pair.a["name"]])
                   if record.pair.a is not None and record.pair.a["name"] in isolated else record for record in records]
        results = classify(records)
    return records, results
