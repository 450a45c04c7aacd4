"""The first divergence's picture (kdiff.picture): the worst values are always drawn, the histogram
counts every differing element once, and each axis's profile puts the error where it is."""
import numpy as np

from kdiff.picture import MAX_AXIS_LENGTH, MAX_POINTS, divergence_picture


def test_a_large_output_is_sampled_with_its_worst_values_and_the_error_located_on_each_axis():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((2, 3, 40, 50)).astype(np.float32)
    b = a + np.float32(1e-6) * rng.standard_normal(a.shape).astype(np.float32)
    b[1, 2, 17, 33] += 5.0
    picture = divergence_picture("conv", "conv_b", a, b)
    assert len(picture.a_values) <= MAX_POINTS and max(abs(x - y) for x, y in
                                                     zip(picture.a_values, picture.b_values)) > 4.9
    assert sum(picture.histogram_counts) + picture.exact == a.size and picture.non_finite == 0
    assert [p.axis for p in picture.axes] == [1, 2, 3]
    assert [int(np.argmax(p.max_abs)) for p in picture.axes] == [2, 17, 33]
    assert picture.to_json()["shape"] == [2, 3, 40, 50]


def test_equal_outputs_non_finite_values_and_long_axes():
    a = np.zeros((1, 3 * MAX_AXIS_LENGTH), np.float32)
    b = a.copy()
    b[0, -1] = np.nan
    picture = divergence_picture("d", "d", a, b)
    assert picture.exact == a.size - 1 and picture.non_finite == 1 and sum(picture.histogram_counts) == 0
    (axis,) = picture.axes
    assert axis.bucket == 3 and len(axis.max_abs) == MAX_AXIS_LENGTH and axis.length == 3 * MAX_AXIS_LENGTH
    assert divergence_picture("d", "d", a, b[:, :-1]) is None  # other shapes: no picture
