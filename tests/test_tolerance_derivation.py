"""Derived tolerances (kdiff.tolerances.derive, judge_layer) on synthetic layer pairs computed with the
numpy reference layers of tests/synthetic_layers.py: two honest computations of the same layer (another
summation order, another precision of the reference) match within the rule derived for it, and a real
difference (a flipped kernel, a scale error of 1e-4, a 16-bit side) does not. Fast tier: no workers.
(tests/test_tolerances.py checks the rules' sizes and reasons; tests/test_tolerances_real.py real pairs.)"""
from __future__ import annotations

import math

import numpy as np
import pytest

from kdiff.alignment import LayerPair
from kdiff.tolerances import EPSILON, derive, judge_layer
from tests.synthetic_layers import conv, dense


def described(name, class_name, output, weights=(), inbound=("input:x",), dtype="float32"):
    return {"name": name, "class_name": class_name, "inbound": list(inbound), "output_shapes": [[None, *output]],
            "dtype": dtype, "weight_shapes": [list(np.shape(w)) for w in weights]}


def pairs_of(*layers, b_dtype=None):
    return [LayerPair(layer, dict(layer, dtype=b_dtype or layer["dtype"]), "name") for layer in layers]


def matches(rule, a, b) -> bool:
    return judge_layer(rule, [a], [b])[0].matches


def reversed_taps_conv(x, kernel, bias):
    """The same convolution summed over its taps in the other order (as another library would)."""
    flipped_x = x[:, ::-1, ::-1]
    return conv(flipped_x, kernel[::-1, ::-1], bias)[:, ::-1, ::-1]


@pytest.fixture(scope="module")
def conv_layer():
    g = np.random.default_rng(1)
    x = g.standard_normal((2, 10, 10, 16)).astype(np.float32)
    kernel = (g.standard_normal((3, 3, 16, 8)) / 12).astype(np.float32)
    bias = (g.standard_normal(8) * 0.1).astype(np.float32)
    return x, kernel, bias


def test_a_float32_conv_summed_in_another_order_matches_and_a_flipped_or_rescaled_one_does_not(conv_layer):
    x, kernel, bias = conv_layer
    tolerances = derive(pairs_of(described("conv", "Conv2D", (8, 8, 8), [kernel, bias])),
                        [{"name": "x", "shape": [None, 10, 10, 16], "dtype": "float32"}])
    rule = tolerances.isolated("conv")
    assert "K=144" in rule.reason and rule.rtol < 1e-5
    exact = conv(x.astype(np.float64), kernel.astype(np.float64), bias.astype(np.float64))
    ours, theirs = conv(x, kernel, bias), reversed_taps_conv(x, kernel, bias)
    assert not np.array_equal(ours, theirs)  # the two orders really round differently
    assert matches(rule, ours, theirs) and matches(rule, exact.astype(np.float32), theirs)
    assert not matches(rule, ours, conv(x, kernel[::-1, ::-1].copy(), bias))
    assert not matches(rule, ours, theirs * np.float32(1 + 1e-4))


def test_a_float64_reference_judges_a_float32_conv_by_float32s_epsilon(conv_layer):
    x, kernel, bias = conv_layer
    layer = described("conv", "Conv2D", (8, 8, 8), [kernel, bias], dtype="float64")
    rule = derive(pairs_of(layer, b_dtype="float32")).isolated("conv")
    assert rule.epsilon == EPSILON["float32"]
    exact = conv(x.astype(np.float64), kernel.astype(np.float64), bias.astype(np.float64))
    assert matches(rule, exact, conv(x, kernel, bias))
    both_float64 = derive(pairs_of(layer)).isolated("conv")  # a float64 pair is held to float64's epsilon
    assert not matches(both_float64, exact, conv(x, kernel, bias).astype(np.float64))


def test_a_float16_dense_matches_another_float16_computation_but_not_a_float32_side():
    g = np.random.default_rng(2)
    x, kernel = g.standard_normal((8, 256)).astype(np.float16), (g.standard_normal((256, 16)) / 16).astype(np.float16)
    half = np.zeros((8, 16), np.float16)  # float16 arithmetic: partial sums of 16 products kept in float16
    for start in range(0, 256, 16):
        half = (half + dense(x[:, start:start + 16], kernel[start:start + 16])).astype(np.float16)
    rounded = (x.astype(np.float32) @ kernel.astype(np.float32)).astype(np.float16)  # float32, rounded once
    assert not np.array_equal(half, rounded)
    layer = described("d", "Dense", (16,), [kernel], dtype="float16")
    float16_rule = derive(pairs_of(layer)).isolated("d")
    assert float16_rule.epsilon == EPSILON["float16"] and matches(float16_rule, rounded, half)
    # against a float32 side it is another computation (float-precision's cause), judged as float32
    mixed = derive(pairs_of(dict(layer, dtype="float32"), b_dtype="float16")).isolated("d")
    assert mixed.epsilon == EPSILON["float32"]
    assert not matches(mixed, x.astype(np.float32) @ kernel.astype(np.float32), half.astype(np.float32))


def chain(depth, weights, x, dtype, faulty=None):
    outputs, h = [], x.astype(dtype)
    for i, w in enumerate(weights):
        h = np.tanh(h @ w.astype(dtype)) * (1 + 1e-4 if i == faulty else 1)
        outputs.append(h)
    return outputs


def test_a_deep_chain_carries_its_inputs_rounding_and_a_fault_deep_in_it_still_fails():
    depth, width = 12, 64
    g = np.random.default_rng(3)
    weights = [g.standard_normal((width, width)) / math.sqrt(width) for _ in range(depth)]
    x = g.standard_normal((16, width))
    layers = [described(f"d{i}", "Dense", (width,), [weights[i]], inbound=["input:x" if i == 0 else f"d{i - 1}"])
              for i in range(depth)]
    tolerances = derive(pairs_of(*layers))
    forward = [tolerances.forward(f"d{i}").rtol for i in range(depth)]
    assert all(later > earlier for earlier, later in zip(forward, forward[1:]))  # each carries the one before
    assert math.isclose(forward[-1], math.sqrt(depth) * tolerances.isolated("d0").rtol)
    exact, honest = chain(depth, weights, x, np.float64), chain(depth, weights, x, np.float32)
    assert all(matches(tolerances.forward(f"d{i}"), exact[i], honest[i]) for i in range(depth))
    moving = derive(pairs_of(described("f", "Flatten", (width,)))).isolated("f")  # ε: no arithmetic allowed
    assert not any(matches(moving, exact[i], honest[i]) for i in range(depth))  # that rounding is real
    faulty = chain(depth, weights, x, np.float32, faulty=8)
    verdicts = [matches(tolerances.forward(f"d{i}"), exact[i], faulty[i]) for i in range(depth)]
    assert verdicts[:8] == [True] * 8 and verdicts[8] is False


def test_the_scale_is_the_smaller_sides_so_a_blown_up_side_cannot_widen_it():
    g = np.random.default_rng(4)
    a = np.maximum(g.standard_normal((4, 32)), 0).astype(np.float32)  # a ReLU's output: many exact zeros
    rule = derive(pairs_of(described("r", "Dense", (32,), [np.zeros((512, 32))]))).isolated("r")
    # honest noise on the zeros is allowed by atol = rtol · the scale, without a relative error of 1
    noisy = (a + np.where(a == 0, rule.rtol * float(a.max()) / 4, 0)).astype(np.float32)
    assert matches(rule, a, noisy)
    broken = a.copy()
    broken[0, 0] = 1e4  # one huge value on side B: its own scale would allow 1e4 · rtol everywhere
    broken[1:] += np.float32(1e-3)
    metrics, used = judge_layer(rule, [a], [broken])
    assert not metrics.matches and math.isclose(used.atol, rule.rtol * float(a.max()), rel_tol=1e-6)
    # with several outputs, the scale is each side's largest over all of them, then the smaller side's
    _, several = judge_layer(rule, [a, 10 * a], [a, 10 * a])
    assert math.isclose(several.atol, rule.rtol * 10 * float(a.max()), rel_tol=1e-6)


def test_a_layer_without_a_rule_and_an_unpaired_one_get_the_generous_fallback():
    layer = described("d", "Dense", (8,), [np.zeros((16, 8))])
    tolerances = derive([LayerPair(layer, None, "")] + pairs_of(dict(layer, name="e")))
    assert tolerances.isolated("d").rtol > tolerances.isolated("e").rtol  # unpaired: no rule of its own
    assert "4096-term reduction" in tolerances.isolated("d").reason
