"""Per-layer isolation: side B's layer run alone on side A's inputs to it (taken from A's last
forward pass), against A's output. Each layer then gets its own error, free of what came before."""
from __future__ import annotations

from kdiff.alignment import LayerPair
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
        name, inbound = pair.a["name"], list(pair.a.get("inbound", ()))
        recorded = a.outputs(inbound + [name])
        inputs = [recorded[source][0] for source in inbound]
        outputs = b.run_layer(pair.b["name"], inputs)
        expected = recorded[name]
        if len(outputs) != len(expected) or any(x.shape != y.shape for x, y in zip(expected, outputs)):
            results[name] = "side B's layer gives outputs of other shapes on side A's inputs"
        else:
            results[name] = judge_layer(tolerances.isolated(name), expected, outputs)[0]
        progress.layer_done(done, len(both))
    return results
