"""Per-layer tolerances derived from the output dtype and the arithmetic the layer does.

The model. Two frameworks compute the same layer with the same formula but their own order
of operations (blocked, vectorised or pairwise sums, fused multiply-adds), so their results
differ by rounding alone. For a reduction of K products (a Dense's K inputs, a Conv's
kh·kw·c_in taps) the classic bound on the rounding error is K·u·Σ|terms|; with the rounding
errors of independent signs it is about √K·u·Σ|terms| (Higham and Mary's probabilistic bound),
and that is the size two correct implementations differ by. kdiff has no terms, only the
outputs, so it measures the error against the layer's scale instead: an element matches when

    |a - b| <= atol + rtol·max(|a|, |b|),   atol = rtol · s,

with s the smaller of the two sides' largest |output| (a broken side cannot widen it) and

    own rtol   = C·ε·√K   for a reduction of length K (Dense, Conv*, average pooling,
                          LayerNormalization, Softmax; recurrent layers: K = inputs + units
                          per step, times √T over the T steps of the sequence),
                 few·ε    for elementwise arithmetic (a few ulps; more for tanh, exp...),
                 ε        for layers that only move or select values (Reshape, MaxPooling...).

ε is the output dtype's machine epsilon (float16 2^-10, bfloat16 2^-7, float32 2^-23,
float64 2^-52) of the dtype the layer is judged in: the finer of the two sides' (a side that
computes in bfloat16 or float16 where the other computes in float32 does another computation,
which the float-precision diagnosis names), but float32 when only one side computes in float64
(a float64 reference measures the float32 side's error, not its every rounding). A layer's output also carries the rounding
its inputs brought; the forward diff allows for it by adding the largest inbound layer's
rtol in quadrature (independent errors): rtol = √(own² + inbound²). A layer run alone on
side A's inputs (isolation, the diagnosis) is judged by its own rtol only.

C was calibrated on real cross-backend pairs (Keras 3 tensorflow against jax and torch on
MobileNetV2 and tests/fixtures/k3_cnn, Theano against TensorFlow once its kernels are
flipped): the largest error seen was about a quarter of the derived rtol·(s + |x|)."""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

from kdiff.metrics import LayerMetrics, Measured, Tolerance, combine, largest_finite_abs

EPSILON = {"float16": 2.0 ** -10, "bfloat16": 2.0 ** -7, "float32": 2.0 ** -23, "float64": 2.0 ** -52}
DEFAULT_DTYPE = "float32"      # a worker that does not say (an old snapshot, a stand-in)
REDUCTION_FACTOR = 2.0         # C in C·ε·√K
ELEMENTWISE_ULPS = 4.0         # +, ·, max, a normalisation's few operations
TRANSCENDENTAL_ULPS = 16.0     # exp, tanh, sigmoid, erf: each library's own approximation
UNKNOWN_TERMS = 4096           # a layer whose arithmetic kdiff cannot see (Lambda, custom) counts as this reduction

MOVING_CLASSES = {  # no arithmetic: values are moved, copied or selected
    "InputLayer", "Reshape", "Flatten", "Permute", "RepeatVector", "Concatenate", "Cropping1D",
    "Cropping2D", "Cropping3D", "ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D", "UpSampling1D", "UpSampling2D",
    "UpSampling3D", "MaxPooling1D", "MaxPooling2D", "MaxPooling3D", "GlobalMaxPooling1D", "GlobalMaxPooling2D",
    "GlobalMaxPooling3D", "MaxPool1D", "MaxPool2D", "MaxPool3D", "GlobalMaxPool1D", "GlobalMaxPool2D",
    "GlobalMaxPool3D", "Embedding", "Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D",
    "GaussianNoise", "GaussianDropout", "AlphaDropout", "Masking", "Identity", "Maximum", "Minimum",
    "ThresholdedReLU", "ActivityRegularization",
}
ELEMENTWISE_CLASSES = {
    "Add", "Subtract", "Multiply", "Average", "Rescaling", "Normalization", "ReLU", "LeakyReLU", "PReLU",
    "BatchNormalization", "Merge",
}
TRANSCENDENTAL_CLASSES = {"Activation", "ELU", "SELU", "Softplus"}
POOLING_AVERAGES = {"AveragePooling1D", "AveragePooling2D", "AveragePooling3D", "AvgPool1D", "AvgPool2D",
                    "AvgPool3D", "GlobalAveragePooling1D", "GlobalAveragePooling2D", "GlobalAveragePooling3D",
                    "GlobalAvgPool1D", "GlobalAvgPool2D", "GlobalAvgPool3D"}
LAST_AXIS_REDUCTIONS = {"Softmax", "LayerNormalization", "UnitNormalization", "GroupNormalization"}
RECURRENT_CLASSES = {"SimpleRNN", "LSTM", "GRU", "CuDNNLSTM", "CuDNNGRU", "Bidirectional", "ConvLSTM2D"}


@dataclass(frozen=True)
class LayerRule:
    """How one layer is judged: its rtol, and why that size."""

    rtol: float
    reason: str
    epsilon: float = EPSILON[DEFAULT_DTYPE]  # of the dtype the rule was derived for

    def on(self, a_outputs, b_outputs) -> Tolerance:
        """The tolerance for these two sides' outputs: atol is rtol times the smaller side's scale."""
        return self.at_scale(min(_scale(a_outputs), _scale(b_outputs)))

    def at_scale(self, scale: float) -> Tolerance:
        """The tolerance where the smaller side's largest finite |output| is ``scale``."""
        return Tolerance(atol=self.rtol * scale, rtol=self.rtol,
                         reason=f"{self.reason}; atol = rtol·{scale:.3g} (the smaller side's max |x|)")


@dataclass(frozen=True)
class _Given:
    """The user's --atol/--rtol, the same for every layer."""

    tolerance: Tolerance

    def on(self, a_outputs, b_outputs) -> Tolerance:
        return self.tolerance

    def at_scale(self, scale: float) -> Tolerance:
        return self.tolerance


@dataclass(frozen=True)
class Tolerances:
    """Every layer's rules, by side A's layer name: ``forward`` for the forward diff (its own rounding
    and its inputs'), ``isolated`` for the layer run alone on side A's inputs, ``gradient`` for its
    gradients. ``given`` holds the user's tolerance when one was given: it then applies everywhere."""

    given: Tolerance | None = None
    forward_rules: dict | None = None
    isolated_rules: dict | None = None
    gradient_rules: dict | None = None

    @classmethod
    def from_user(cls, tolerance: Tolerance) -> "Tolerances":
        return cls(given=tolerance if tolerance.reason else replace(tolerance, reason="one tolerance for every layer"))

    def forward(self, layer: str):
        return self._rule(self.forward_rules, layer)

    def isolated(self, layer: str):
        return self._rule(self.isolated_rules, layer)

    def gradient(self, layer: str, summed_terms: int = 1) -> Tolerance:
        """The base tolerance of the layer's gradients (kdiff.gradients scales its atol to them); a
        weight's gradient also sums ``summed_terms`` products (over the batch and the positions)."""
        if self.given is not None:
            return self.given
        rule = self.gradient_rules.get(layer) or _fallback(DEFAULT_DTYPE)
        if summed_terms <= 1:
            return Tolerance(atol=0.0, rtol=rule.rtol, reason=rule.reason)
        summed = REDUCTION_FACTOR * rule.epsilon * math.sqrt(summed_terms)
        return Tolerance(atol=0.0, rtol=math.hypot(rule.rtol, summed),
                         reason=f"{rule.reason}; and {REDUCTION_FACTOR:g}ε·√{summed_terms} for the sum over the "
                                "batch and positions")

    def backward_alone(self, layer: str, fan: float = 1.0, summed_terms: int = 1) -> Tolerance:
        """The base tolerance of a layer's backward run alone, on the same values on both sides
        (kdiff.gradient_isolation; kdiff.gradients scales its atol to the gradients): the rtol of the
        layer's own arithmetic, for an input's gradient grown by √fan (each input element takes part in
        ``fan`` times as many products as each output element sums: the output's size over the input's),
        for a weight's gradient with 2ε·√(summed_terms) for its sum over the batch and positions."""
        if self.given is not None:
            return self.given
        rule = (self.isolated_rules or {}).get(layer) or _fallback(DEFAULT_DTYPE)
        rtol = rule.rtol * math.sqrt(max(1.0, fan))
        if summed_terms > 1:
            rtol = math.hypot(rtol, REDUCTION_FACTOR * rule.epsilon * math.sqrt(summed_terms))
        return Tolerance(atol=0.0, rtol=rtol, reason=f"{rule.reason}, in the layer's backward alone")

    def _rule(self, rules: dict | None, layer: str):
        if self.given is not None:
            return _Given(self.given)
        return rules.get(layer) or _fallback(DEFAULT_DTYPE)


def judge_layer(rule, a_outputs: list, b_outputs: list) -> tuple[LayerMetrics, Tolerance]:
    """A layer's outputs on side A against side B's (as many, of equal shapes), judged by its rule
    (a LayerRule, or the user's tolerance) at the smaller side's scale, which the same pass over the
    arrays measures: the metrics, and the tolerance they were judged by."""
    measured = [Measured(x, y) for x, y in zip(a_outputs, b_outputs)]
    tolerance = rule.at_scale(min(max((m.scale_a for m in measured), default=0.0),
                                  max((m.scale_b for m in measured), default=0.0)))
    return combine([m.judged(tolerance) for m in measured]), tolerance


def as_tolerances(tolerance: "Tolerance | Tolerances") -> Tolerances:
    """A single Tolerance (a caller's fixed one) as rules that give it for every layer."""
    return tolerance if isinstance(tolerance, Tolerances) else Tolerances.from_user(tolerance)


def derive(pairs, a_inputs: list[dict] = ()) -> Tolerances:
    """Every paired layer's rules, from the two sides' layer descriptions (kdiff.alignment pairs, in
    topological order) and side A's input specs (for the shapes feeding the first layers)."""
    shapes = {f"input:{spec['name']}": spec.get("shape") for spec in a_inputs}
    own: dict[str, LayerRule] = {}
    forward: dict[str, LayerRule] = {}
    consumers: dict[str, list[str]] = {}
    order = []
    for pair in pairs:
        if pair.a is None or pair.b is None:
            continue
        name = pair.a["name"]
        order.append(name)
        if pair.a.get("output_shapes"):
            shapes[name] = pair.a["output_shapes"][0]
        inbound = [source for source in pair.a.get("inbound", ()) if not source.startswith("input:")]
        for source in inbound:
            consumers.setdefault(source, []).append(name)
        input_shape = next((shapes.get(s) for s in pair.a.get("inbound", ()) if shapes.get(s)), None)
        own[name] = own_rule(pair.a, pair.b, input_shape)
        carried = max((forward[s] for s in inbound if s in forward), key=lambda r: r.rtol, default=None)
        forward[name] = own[name] if carried is None else LayerRule(
            math.hypot(own[name].rtol, carried.rtol),
            f"{own[name].reason}, with its inputs' {carried.rtol:.2g} in quadrature", own[name].epsilon)
    worst_forward = max((rule.rtol for rule in forward.values()), default=0.0)
    backward: dict[str, float] = {}
    gradient: dict[str, LayerRule] = {}
    for name in reversed(order):
        after = max((backward[c] for c in consumers.get(name, ()) if c in backward), default=0.0)
        backward[name] = math.hypot(own[name].rtol, after)
        gradient[name] = LayerRule(math.hypot(worst_forward, backward[name]),
                                   f"the model's forward rtol {worst_forward:.2g} and the backward pass "
                                   f"from the loss to here {backward[name]:.2g}, in quadrature", own[name].epsilon)
    return Tolerances(forward_rules=forward, isolated_rules=own, gradient_rules=gradient)


def own_rule(a: dict, b: dict, input_shape) -> LayerRule:
    """The rtol of the layer's own arithmetic: ``a`` and ``b`` are the two sides' descriptions."""
    dtype = judged_dtype(a.get("dtype"), b.get("dtype"))
    eps = EPSILON[dtype]
    class_name = a["class_name"]
    described = a if a.get("weight_shapes") is not None else b
    weights = [tuple(shape) for shape in described.get("weight_shapes") or []]
    output = tuple(a.get("output_shapes", [[]])[0] or ())
    if class_name in MOVING_CLASSES:
        return LayerRule(eps, f"{dtype} ε (values moved or selected, no arithmetic)", eps)
    if class_name in ELEMENTWISE_CLASSES:
        return LayerRule(ELEMENTWISE_ULPS * eps, f"{dtype} {ELEMENTWISE_ULPS:g}ε (elementwise arithmetic)", eps)
    if class_name in TRANSCENDENTAL_CLASSES:
        return LayerRule(TRANSCENDENTAL_ULPS * eps, f"{dtype} {TRANSCENDENTAL_ULPS:g}ε (elementwise, "
                                                    "with exp/tanh-like functions)", eps)
    if class_name in RECURRENT_CLASSES:
        return _recurrent(class_name, dtype, weights, output, input_shape)
    if class_name in POOLING_AVERAGES:
        terms = _ratio(input_shape, output)
        return _reduction(dtype, terms, f"{class_name} over {terms} values" if terms else class_name)
    if class_name in LAST_AXIS_REDUCTIONS and output and output[-1]:
        return _reduction(dtype, output[-1], f"{class_name} over the last axis")
    kernels = [shape for shape in weights if len(shape) >= 2]
    if kernels:
        terms, what = _kernel_terms(class_name, kernels, weights, output)
        return _reduction(dtype, terms, what)
    return _fallback(dtype, f"{class_name}: arithmetic unknown to kdiff")


def judged_dtype(*dtypes) -> str:
    """The dtype whose epsilon a layer's difference is judged by: the finer of the sides' dtypes,
    float32 where only some sides compute in float64 (float32 for a dtype not given or not a
    float kdiff knows)."""
    known = [d for d in dtypes if d in EPSILON] or [DEFAULT_DTYPE]
    finer, coarser = min(known, key=EPSILON.__getitem__), max(known, key=EPSILON.__getitem__)
    return DEFAULT_DTYPE if finer == "float64" and coarser != "float64" else finer


def _reduction(dtype: str, terms: int, what: str) -> LayerRule:
    terms = max(1, int(terms))
    rtol = REDUCTION_FACTOR * EPSILON[dtype] * math.sqrt(terms) + ELEMENTWISE_ULPS * EPSILON[dtype]
    return LayerRule(rtol, f"{dtype} {REDUCTION_FACTOR:g}ε·√K, K={terms} ({what})", EPSILON[dtype])


def _fallback(dtype: str, why: str = "no layer description") -> LayerRule:
    rule = _reduction(dtype, UNKNOWN_TERMS, why)
    return LayerRule(rule.rtol, f"{rule.reason}, allowed as a {UNKNOWN_TERMS}-term reduction", rule.epsilon)


def _kernel_terms(class_name: str, kernels: list[tuple], weights: list[tuple], output: tuple) -> tuple[int, str]:
    """The reduction length of a layer with a kernel: the products summed into each output value."""
    kernel = kernels[0]
    if class_name == "Dense" and len(kernel) == 2:
        return kernel[0], f"Dense of {kernel[0]} inputs"
    outputs = _output_channels(kernel, weights, output)
    if "Separable" in class_name and len(kernels) >= 2:
        depthwise = math.prod(kernel) // max(1, math.prod(kernels[1]) // outputs)
        pointwise = math.prod(kernels[1]) // outputs
        return depthwise + pointwise, f"{class_name}: {depthwise} taps then {pointwise} channels"
    terms = math.prod(kernel) // outputs
    size = "x".join(str(d) for d in kernel)
    return terms, f"{class_name} kernel {size}, {outputs} outputs"


def _output_channels(kernel: tuple, weights: list[tuple], output: tuple) -> int:
    """How many output channels the kernel feeds: the bias's length, else the output's channel axis
    (last, or second for channels_first) that divides the kernel."""
    size = math.prod(kernel)
    bias = next((shape[0] for shape in weights if len(shape) == 1 and shape[0] and size % shape[0] == 0), None)
    if bias:
        return bias
    for axis in (-1, 1):
        if len(output) > abs(axis) and output[axis] and output[axis] in kernel:
            return output[axis]
    return kernel[-1] or 1


def _recurrent(class_name: str, dtype: str, weights: list[tuple], output: tuple, input_shape) -> LayerRule:
    """Per step a reduction over the inputs and the units (K = inputs + units; a ConvLSTM's, each times its
    kernel's window); the state carries the rounding of every step before, independent errors growing as √T
    over the T steps."""
    kernels = [shape for shape in weights if len(shape) >= 2]  # kernel (..., inputs, ...), then recurrent
    steps = input_shape[1] if input_shape is not None and len(input_shape) >= 3 and input_shape[1] else 1
    inputs = kernels[0][-2] if kernels else (input_shape[-1] if input_shape else 0) or 0
    units = kernels[1][-2] if len(kernels) >= 2 else (output[-1] if output and output[-1] else 0)
    window = math.prod(kernels[0][:-2]) if kernels else 1  # a ConvLSTM's kernel window; 1 for a Dense-like one
    per_step = f"({inputs} inputs + {units} units)" + (f" × {window} kernel positions" if window > 1 else "")
    rule = _reduction(dtype, (inputs + units) * window * steps, f"{class_name}: {per_step} × {steps} steps")
    return LayerRule(rule.rtol + TRANSCENDENTAL_ULPS * EPSILON[dtype], rule.reason + ", with its gates",
                     rule.epsilon)


def _ratio(input_shape, output: tuple) -> int:
    """How many input values each output value averages (input size / output size, batch aside)."""
    if not input_shape or not output or any(d is None for d in (*input_shape[1:], *output[1:])):
        return 1
    return max(1, math.prod(input_shape[1:]) // max(1, math.prod(output[1:])))


def _scale(arrays) -> float:
    """The largest finite |value| over the arrays (0 for none)."""
    return largest_finite_abs(arrays)
