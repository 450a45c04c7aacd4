"""Per-layer tolerances derived from the dtype and the arithmetic (kdiff.tolerances): no workers."""
import math

import numpy as np

from kdiff.alignment import LayerPair
from kdiff.metrics import Tolerance, compare_arrays
from kdiff.report import BackendInfo, DiffReport, LayerResult
from kdiff.tolerances import EPSILON, Tolerances, as_tolerances, derive, own_rule


def layer(name, class_name, output, weights=(), inbound=("input:x",), dtype="float32"):
    return {"name": name, "class_name": class_name, "inbound": list(inbound), "output_shapes": [list(output)],
            "dtype": dtype, "weight_shapes": [list(w) for w in weights]}


def own(description, input_shape=None, b=None):
    return own_rule(description, b or description, input_shape)


def test_a_dense_of_1024_inputs_gets_a_larger_rtol_than_an_activation():
    dense = own(layer("d", "Dense", (None, 10), [(1024, 10), (10,)]))
    relu = own(layer("r", "Activation", (None, 10)))
    assert dense.rtol > 2 * relu.rtol
    assert "K=1024" in dense.reason and "float32" in dense.reason


def test_the_reduction_length_of_a_conv_is_its_taps_times_its_input_channels():
    conv = own(layer("c", "Conv2D", (None, 16, 16, 64), [(3, 3, 128, 64), (64,)]))
    assert "K=1152" in conv.reason
    # Keras 1 'th' kernels hold (out, in, rows, cols): the same reduction
    keras1 = own(layer("c", "Convolution2D", (None, 64, 16, 16), [(64, 128, 3, 3), (64,)]))
    assert "K=1152" in keras1.reason and math.isclose(keras1.rtol, conv.rtol)
    # without a bias, the output's channel axis says which kernel axis is the outputs'
    no_bias = own(layer("c", "Conv2D", (None, 16, 16, 64), [(3, 3, 128, 64)]))
    assert "K=1152" in no_bias.reason
    depthwise = own(layer("dw", "DepthwiseConv2D", (None, 16, 16, 32), [(3, 3, 32, 1), (32,)]))
    assert "K=9" in depthwise.reason


def test_the_rtol_grows_as_the_square_root_of_the_reduction_length():
    small = own(layer("d", "Dense", (None, 8), [(100, 8)]))
    large = own(layer("d", "Dense", (None, 8), [(10000, 8)]))
    assert 8 < large.rtol / small.rtol < 10.01


def test_half_precision_outputs_get_their_own_epsilon():
    dense = [(256, 8), (8,)]
    f32 = own(layer("d", "Dense", (None, 8), dense))
    f16 = own(layer("d", "Dense", (None, 8), dense, dtype="float16"))
    bf16 = own(layer("d", "Dense", (None, 8), dense, dtype="bfloat16"))
    f64 = own(layer("d", "Dense", (None, 8), dense, dtype="float64"))
    assert f64.rtol < f32.rtol < f16.rtol < bf16.rtol
    assert math.isclose(bf16.rtol / f32.rtol, EPSILON["bfloat16"] / EPSILON["float32"])
    assert "bfloat16" in bf16.reason


def test_a_side_in_lower_precision_is_judged_by_the_other_sides_float32():
    """A bfloat16 or float16 layer against a float32 one is another computation (float-precision
    names it), so it is judged as float32; two 16-bit sides as 16-bit; float32 against a float64
    reference as float32, and two float64 sides as float64."""
    a = layer("d", "Dense", (None, 8), [(256, 8)])
    assert own_rule(a, dict(a, dtype="bfloat16"), None).rtol == own(a).rtol
    assert own_rule(dict(a, dtype="float16"), dict(a, dtype="float16"), None).rtol == own(dict(a, dtype="float16")).rtol
    assert own_rule(dict(a, dtype="float16"), dict(a, dtype="bfloat16"), None).rtol == own(dict(a, dtype="float16")).rtol
    assert own_rule(dict(a, dtype="float64"), a, None).rtol == own(a).rtol
    assert own_rule(dict(a, dtype="float64"), dict(a, dtype="float64"), None).rtol == own(dict(a, dtype="float64")).rtol


def test_moving_values_allows_one_ulp_and_averages_scale_with_the_pool():
    assert own(layer("f", "Flatten", (None, 64))).rtol == EPSILON["float32"]
    pooled = own(layer("p", "GlobalAveragePooling2D", (None, 64)), input_shape=(None, 8, 8, 64))
    assert "K=64" in pooled.reason


def test_a_recurrent_layer_counts_inputs_and_units_over_every_step():
    lstm = own(layer("l", "LSTM", (None, 32), [(16, 128), (32, 128), (128,)]), input_shape=(None, 50, 16))
    assert "K=2400" in lstm.reason and "50 steps" in lstm.reason


def test_a_layer_kdiff_cannot_see_into_gets_a_generous_rtol():
    lam = own(layer("l", "Lambda", (None, 8)))
    assert lam.rtol > own(layer("d", "Dense", (None, 8), [(1024, 8)])).rtol
    assert "unknown" in lam.reason


def chain():
    """input -> dense (K=1024) -> relu -> dense (K=16)."""
    layers = [layer("dense_1", "Dense", (None, 16), [(1024, 16), (16,)]),
              layer("relu", "Activation", (None, 16), inbound=["dense_1"]),
              layer("dense_2", "Dense", (None, 4), [(16, 4), (4,)], inbound=["relu"])]
    return [LayerPair(d, dict(d), "name") for d in layers]


def test_the_forward_rtol_carries_the_inputs_while_the_isolated_one_does_not():
    tolerances = derive(chain(), [{"name": "x", "shape": [None, 1024], "dtype": "float32"}])
    dense, relu = tolerances.forward("dense_1"), tolerances.forward("relu")
    assert relu.rtol > dense.rtol > tolerances.isolated("relu").rtol
    assert math.isclose(relu.rtol, math.hypot(dense.rtol, tolerances.isolated("relu").rtol))
    assert "with its inputs'" in relu.reason
    assert tolerances.isolated("relu").rtol < dense.rtol


def test_gradients_carry_the_whole_forward_pass_and_weight_gradients_their_sums():
    tolerances = derive(chain())
    worst_forward = max(tolerances.forward(name).rtol for name in ("dense_1", "relu", "dense_2"))
    assert tolerances.gradient("dense_1").rtol >= worst_forward
    assert tolerances.gradient("dense_1", summed_terms=4096).rtol > tolerances.gradient("dense_1").rtol


def test_atol_follows_the_scale_of_the_smaller_side():
    rule = derive(chain()).forward("dense_1")
    a = np.array([0.0, 100.0], np.float32)
    tolerance = rule.on([a], [a * 1e3])
    assert math.isclose(tolerance.atol, rule.rtol * 100.0)
    assert "atol = rtol·100" in tolerance.reason


def test_honest_rounding_matches_and_a_real_fault_does_not():
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((8, 1024)).astype(np.float32), rng.standard_normal((1024, 16)).astype(np.float32)
    exact = x.astype(np.float64) @ w.astype(np.float64)
    blocked = sum(x[:, i:i + 64] @ w[i:i + 64] for i in range(0, 1024, 64))  # another summation order
    rule = derive(chain()).isolated("dense_1")
    assert compare_arrays(exact.astype(np.float32), blocked, rule.on([exact], [blocked])).matches
    assert not compare_arrays(exact, blocked * (1 + 5e-5), rule.on([exact], [blocked])).matches
    # the old fixed tolerance lets that scale error through
    assert compare_arrays(exact, blocked * (1 + 5e-5), Tolerance()).matches


def test_a_given_tolerance_applies_to_every_layer():
    given = Tolerance(1e-3, 1e-2, "given: --atol/--rtol")
    tolerances = as_tolerances(given)
    assert tolerances.forward("anything").on([np.ones(2)], [np.ones(2)]) == given
    assert tolerances.isolated("anything").on([np.ones(2)], [np.ones(2)]) == given
    assert tolerances.gradient("anything", summed_terms=100) == given
    assert isinstance(Tolerances.from_user(Tolerance()).given.reason, str)


def test_the_report_says_which_mode_and_every_layer_its_tolerance():
    backends = (BackendInfo("a", "tensorflow", {}, "cpu", "/a"), BackendInfo("b", "jax", {}, "cpu", "/b"))
    judged = Tolerance(2e-6, 1e-6, "float32 2ε·√K, K=64 (Dense of 64 inputs)")
    layers = (LayerResult("d", "Dense", (2, 3), (2, 3), "match", tolerance=judged),)
    derived = DiffReport(backends, layers, None, {}).to_json()
    assert derived["tolerance"] == {"mode": "derived"}
    assert derived["layers"][0]["tolerance"] == {"atol": 2e-6, "rtol": 1e-6, "reason": judged.reason}
    given = DiffReport(backends, layers, Tolerance(1e-5, 1e-4), {}).to_json()
    assert given["tolerance"] == {"mode": "given", "atol": 1e-5, "rtol": 1e-4}
