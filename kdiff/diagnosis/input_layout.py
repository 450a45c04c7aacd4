"""Side B's model declares its input with the channels axis moved (a channels_last port of a
channels_first model, or the reverse): the sample fits it only transposed. This is decided
before the first comparison (kdiff.layouts feeds side B the sample in its layout); the finding
says so and proves it: side B's first layers, fed side A's input transposed, match side A."""
from __future__ import annotations

from kdiff.diagnosis.model import ErrorSize, Finding
from kdiff.errors import KdiffError
from kdiff.metrics import LayerMetrics, Tolerance, combine
from kdiff.tolerances import Tolerances, as_tolerances, judge_layer

ID = "input-layout"


def prove_input_layout(session, tolerance: Tolerance | Tolerances) -> tuple[Finding, ...]:
    """The input-layout finding (one), from side A's last forward pass; () when B's inputs are not moved.
    Each first layer, run alone, is judged by its own rule in ``tolerance`` (kdiff.tolerances)."""
    tolerances = as_tolerances(tolerance)
    bridge = session.bridge
    moved = bridge.moved_inputs
    if not moved:
        return ()
    a, b = session.clients["a"], session.clients["b"]
    first = [pair for pair in session.pairs if pair.a is not None and pair.b is not None and pair.a.get("inbound")
             and all(source.startswith("input:") for source in pair.a["inbound"])]
    after, before = [], []
    for pair in first:
        inbound = list(pair.a["inbound"])
        recorded = a.outputs(inbound + [pair.a["name"]])
        inputs = [recorded[source][0] for source in inbound]
        expected = recorded[pair.a["name"]]
        outputs = b.run_layer(pair.b["name"], inputs)  # transposed to side B's layout and back
        after.append(_compare(expected, outputs, tolerances.isolated(pair.a["name"])))
        before.append(_as_is(b, pair.b["name"], inputs, expected, tolerances.isolated(pair.a["name"])))
    if not after or any(not isinstance(m, LayerMetrics) for m in after):
        return ()
    proven = combine(after)
    sizes = [m for m in before if isinstance(m, LayerMetrics)]
    was = ErrorSize(combine(sizes).max_abs, combine(sizes).max_rel) if len(sizes) == len(before) else \
        ErrorSize(float("inf"), None)
    a_map = bridge.maps[moved[0]][0]
    sample_shape = "(N, C, H, W)" if a_map.a_layout == "channels_first" else "(N, H, W, C)"
    wanted = "(N, H, W, C)" if a_map.a_layout == "channels_first" else "(N, C, H, W)"
    axes = _axes(inputs[0].ndim, a_map.a_layout)
    return (Finding(
        cause=ID, layer=first[0].a["name"], verified=proven.matches, before=was,
        after=ErrorSize(proven.max_abs, proven.max_rel),
        fix=(f"Feed side B the sample as {wanted}: its model declares its input with the channels axis "
             f"{'last' if a_map.a_layout == 'channels_first' else 'first'} ({bridge.b_layout}), while the sample "
             f"is {sample_shape} in side A's {bridge.a_layout} layout. kdiff transposed it for side B and "
             "compares every layer in side A's layout."),
        code=f"x = np.transpose(sample, {axes})  # {sample_shape} -> {wanted}",
        explains=tuple(pair.a["name"] for pair in first if proven.matches),
        detail={"b_inputs": [name.removeprefix("input:") for name in moved]},
    ),)


def _axes(ndim: int, a_layout: str) -> tuple:
    """The transpose that moves the sample's channels axis to where side B expects it."""
    return (0, *range(2, ndim), 1) if a_layout == "channels_first" else (0, ndim - 1, *range(1, ndim - 1))


def _compare(expected, outputs, rule) -> LayerMetrics | str:
    if len(outputs) != len(expected) or any(x.shape != y.shape for x, y in zip(expected, outputs)):
        return "outputs of other shapes"
    return judge_layer(rule, expected, outputs)[0]


def _as_is(b, layer: str, inputs, expected, rule) -> LayerMetrics | str:
    """Side B's layer fed side A's input untransposed: an error size, or why it cannot run."""
    raw = getattr(b, "client", b)
    try:
        return _compare(expected, raw.run_layer(layer, inputs), rule)
    except KdiffError as error:
        return error.message if hasattr(error, "message") else str(error)
