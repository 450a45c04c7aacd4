import math

import numpy as np
import pytest

from kdiff import metrics
from kdiff.metrics import Tolerance, combine, compare_arrays


def test_identical_arrays_match_with_zero_error():
    x = np.random.default_rng(0).standard_normal((3, 5)).astype(np.float32)
    m = compare_arrays(x, x.copy(), Tolerance())
    assert (m.max_abs, m.max_rel, m.mean_abs, m.out_of_tolerance) == (0, 0, 0, 0)
    assert m.cosine == pytest.approx(1.0) and m.matches


def test_errors_are_measured_against_numpy_reference():
    rng = np.random.default_rng(1)
    a = rng.standard_normal(1000)
    b = a + rng.standard_normal(1000) * 1e-3
    m = compare_arrays(a, b, Tolerance(atol=1e-5, rtol=1e-4))
    diff = np.abs(a - b)
    scale = np.maximum(np.abs(a), np.abs(b))
    assert m.max_abs == pytest.approx(diff.max())
    assert m.max_rel == pytest.approx((diff / scale).max())
    assert m.mean_abs == pytest.approx(diff.mean())
    assert m.cosine == pytest.approx(a @ b / np.linalg.norm(a) / np.linalg.norm(b))
    assert m.out_of_tolerance == pytest.approx(np.mean(diff > 1e-5 + 1e-4 * scale))
    assert not m.matches


def test_chunked_computation_equals_whole(monkeypatch):
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal(1001), rng.standard_normal(1001)
    whole = compare_arrays(a, b, Tolerance())
    monkeypatch.setattr(metrics, "CHUNK", 7)
    chunked = compare_arrays(a, b, Tolerance())
    for field in ("max_abs", "max_rel", "mean_abs", "cosine", "out_of_tolerance"):
        assert getattr(chunked, field) == pytest.approx(getattr(whole, field), rel=1e-12)


@pytest.mark.parametrize("size", [1e-14, 1e-25, 1e-40])
def test_values_whose_squares_are_subnormal_are_measured_as_numpy_does_in_float64(size):
    """Such chunks are scaled up by a power of two first (the CPU is slow on subnormal numbers)."""
    rng = np.random.default_rng(4)
    a = (rng.standard_normal(5000) * size).astype(np.float32)
    b = (a * np.float32(1 + 3e-5)).astype(np.float32)
    tolerance = Tolerance(atol=size * 1e-6, rtol=1e-5)
    got = compare_arrays(a, b, tolerance)
    x, y = a.astype(np.float64), b.astype(np.float64)
    diff, scale = np.abs(x - y), np.maximum(np.abs(x), np.abs(y))
    assert got.mean_abs == pytest.approx(diff.mean(), rel=1e-6) and got.max_abs == diff.max()
    assert got.cosine == pytest.approx(np.dot(x, y) / np.sqrt(np.dot(x, x) * np.dot(y, y)), abs=1e-12)
    assert got.max_rel == pytest.approx((diff[scale > 0] / scale[scale > 0]).max(), rel=1e-6)
    outside = np.mean(diff > tolerance.atol + tolerance.rtol * scale)
    assert got.out_of_tolerance == pytest.approx(outside, abs=2e-4) and 0 < outside < 1
    measured = metrics.Measured(a, b)
    assert (measured.scale_a, measured.scale_b) == (float(np.abs(a).max()), float(np.abs(b).max()))


def test_chunks_scaled_by_different_units_weigh_in_the_cosine_as_unscaled(monkeypatch):
    rng = np.random.default_rng(5)
    tiny, tinier = (rng.standard_normal(1000) * 1e-14).astype(np.float32), (rng.standard_normal(1000) * 1e-16).astype(np.float32)
    a, b = np.concatenate([tiny, tinier]), np.concatenate([tiny, -tinier])  # the same, then opposite
    monkeypatch.setattr(metrics, "CHUNK", 1000)
    x, y = a.astype(np.float64), b.astype(np.float64)
    assert compare_arrays(a, b, Tolerance()).cosine == pytest.approx(np.dot(x, y) / np.sqrt(np.dot(x, x) * np.dot(y, y)),
                                                                    abs=1e-9)


def test_nan_on_both_sides_is_equal_but_on_one_side_is_a_divergence():
    a = np.array([1.0, np.nan, np.inf])
    assert compare_arrays(a, a.copy(), Tolerance()).matches
    m = compare_arrays(a, np.array([1.0, 2.0, np.inf]), Tolerance())
    assert (m.nan_a, m.nan_b, m.inf_a, m.inf_b) == (1, 0, 1, 1)
    assert not m.matches and math.isinf(m.max_abs)
    assert not compare_arrays(a, np.array([1.0, np.nan, -np.inf]), Tolerance()).matches


def test_zero_arrays_have_cosine_one_and_one_zero_side_cosine_zero():
    z = np.zeros(4)
    assert compare_arrays(z, z, Tolerance()).cosine == 1.0
    assert compare_arrays(z, np.ones(4), Tolerance()).cosine == 0.0


def test_shape_mismatch_is_refused():
    with pytest.raises(ValueError, match="shapes differ"):
        compare_arrays(np.zeros(3), np.zeros(4), Tolerance())


def test_combine_weights_by_size():
    small = compare_arrays(np.zeros(1), np.ones(1), Tolerance())
    large = compare_arrays(np.zeros(3), np.zeros(3), Tolerance())
    both = combine([small, large])
    assert both.size == 4 and both.mean_abs == pytest.approx(0.25) and both.out_of_tolerance == pytest.approx(0.25)


def test_float32_inputs_give_float64_accurate_metrics():
    rng = np.random.default_rng(3)
    a = rng.standard_normal(300_000).astype(np.float32)
    b = (a * (1 + rng.standard_normal(a.size) * 1e-6)).astype(np.float32)
    m = compare_arrays(a, b, Tolerance())
    x, y = a.astype(np.float64), b.astype(np.float64)
    assert m.max_abs == pytest.approx(np.abs(x - y).max(), rel=1e-6)
    assert m.mean_abs == pytest.approx(np.abs(x - y).mean(), rel=1e-6)
    assert 1 - m.cosine == pytest.approx(1 - x @ y / np.linalg.norm(x) / np.linalg.norm(y), rel=1e-3)


def test_integer_and_mixed_dtypes_are_compared_in_float64():
    m = compare_arrays(np.array([1, 2, 3], np.int64), np.array([1.0, 2.0, 3.5], np.float32), Tolerance())
    assert m.max_abs == pytest.approx(0.5) and m.out_of_tolerance == pytest.approx(1 / 3)


def test_finite_values_whose_squares_overflow_keep_an_exact_cosine():
    a = np.array([3e30, 1.0], np.float32)  # a float32 square overflows: the norms are summed in float64
    m = compare_arrays(a, a.copy(), Tolerance())
    assert m.matches and m.cosine == 1.0 and (m.nan_a, m.inf_a) == (0, 0)
    m = compare_arrays(a, np.array([-3e30, 1.0], np.float32), Tolerance())
    assert m.cosine == pytest.approx(-1.0) and m.max_abs == pytest.approx(6e30, rel=1e-6)
    m = compare_arrays(np.array([3e38], np.float32), np.array([-3e38], np.float32), Tolerance())
    assert m.max_abs == pytest.approx(6e38, rel=1e-6) and m.out_of_tolerance == 1.0 and m.inf_a == 0
    # float64 values whose squares overflow float64 (this once recursed until RecursionError)
    a = np.array([1e200, -2e200, 1.0])
    m = compare_arrays(a, a * (1 + 1e-12), Tolerance())
    assert m.matches and m.cosine == pytest.approx(1.0) and m.max_rel == pytest.approx(1e-12, rel=1e-3)
    m = compare_arrays(a, np.array([1e200, 2e200, 1.0]), Tolerance())
    assert m.cosine == pytest.approx(-3 / 5) and m.max_abs == pytest.approx(4e200) and m.out_of_tolerance == pytest.approx(1 / 3)


def test_largest_finite_abs_skips_nan_and_inf_and_reads_integers():
    assert metrics.largest_finite_abs([np.array([-3.0, 2.0], np.float32), np.array([1.0, np.inf, np.nan])]) == 3.0
    assert metrics.largest_finite_abs([np.array([], np.float32), np.array([-7, 2], np.int32)]) == 7.0
    assert metrics.largest_finite_abs([np.array([np.nan, np.inf])]) == 0.0


@pytest.mark.parametrize("offset", [0.0, 1e-3])
def test_a_tolerance_applied_after_the_pass_judges_as_one_given_up_front(offset):
    """Measured reads each side's scale in its pass; judged afterwards (a second pass only where the largest
    difference exceeds atol), it gives what compare_arrays gives with that tolerance, matching or not."""
    rng = np.random.default_rng(4)
    a = rng.standard_normal(70_000).astype(np.float32)
    b = a + offset * rng.standard_normal(a.size).astype(np.float32)
    b[5] = np.nan
    a[5] = np.nan
    b[6] = np.inf  # one-sided: counted however the tolerance comes
    measured = metrics.Measured(a, b)
    finite = np.isfinite(a)
    assert measured.scale_a == np.abs(a[finite]).max() and measured.scale_b == np.abs(b[np.isfinite(b)]).max()
    tolerance = Tolerance(atol=1e-4 * measured.scale_a, rtol=1e-4)
    assert measured.judged(tolerance) == compare_arrays(a, b, tolerance)
    assert (measured.judged(tolerance).out_of_tolerance > 1 / a.size) == (offset > 0)
