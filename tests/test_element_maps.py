"""Finding how side B holds side A's weight: reordered, reversed, or inside a larger array of zeros."""
import numpy as np

from kdiff.element_maps import find_channel_scale, find_element_map


def test_a_flipped_kernel_inside_zeros_is_found_only_when_asked():
    a = np.random.default_rng(0).standard_normal((2, 2, 3, 4)).astype(np.float32)
    b = np.zeros((3, 3, 3, 4), np.float32)
    b[0:2, 1:3] = a[::-1, ::-1]
    assert find_element_map(a, b) is None
    found = find_element_map(a, b, within_zeros=True)
    assert found.reversed == (0, 1) and found.window == ((0, 2), (1, 3), (0, 3), (0, 4))
    assert np.array_equal(found(a), found.part_of_b(b)) and not found.is_identity


def test_a_larger_array_with_anything_but_zeros_around_is_not_a_window():
    a = np.arange(1, 5, dtype=np.float32).reshape(2, 2)
    b = np.zeros((3, 3), np.float32)
    b[:2, :2] = a
    b[2, 2] = 1.0
    assert find_element_map(a, b, within_zeros=True) is None


def test_a_transposed_kernel_maps_as_before():
    a = np.random.default_rng(1).standard_normal((4, 3, 2, 2)).astype(np.float32)  # Keras 1 'th' (out, in, r, c)
    found = find_element_map(a, a.transpose(2, 3, 1, 0))
    assert found.axes == (2, 3, 1, 0) and found.window == () and np.array_equal(found.part_of_b(a), a)


def test_a_kernel_whose_rows_follow_the_other_layouts_flatten_order_is_found_and_others_are_not():
    import numpy as np

    from kdiff.element_maps import find_row_permutation

    kernel = np.random.default_rng(3).standard_normal((4 * 6 * 6, 5))
    permuted = kernel.reshape(4, 6, 6, 5).transpose(1, 2, 0, 3).reshape(144, 5)
    found = find_row_permutation(kernel, permuted, (4, 6, 6))
    assert found is not None and np.array_equal(found(kernel), permuted)
    assert find_row_permutation(kernel, permuted, (6, 6, 4)) is not None  # the shape as the other layout states it
    assert find_row_permutation(kernel, kernel[::-1], (4, 6, 6)) is None
    assert find_row_permutation(kernel, kernel, (4, 6, 6)) is None  # the same order: no map


def test_a_kernel_scaled_per_output_channel_maps_its_gradients_by_the_inverse_scale():
    g = np.random.default_rng(2)
    a = g.standard_normal((3, 3, 2, 4)).astype(np.float32)
    ratio = np.array([0.05, 1.5, 20.0, 3.0])  # gamma / sqrt(var + eps): a BatchNormalization folded in
    found = find_channel_scale(a, (a * ratio).astype(np.float32), 4)
    assert found is not None and np.allclose(found.ratio, ratio, rtol=1e-6)
    gradient, bias_gradient = g.standard_normal((3, 3, 2, 4)), g.standard_normal(4)
    assert np.allclose(found(gradient), gradient / ratio) and np.allclose(found(bias_gradient), bias_gradient / ratio)
    depthwise = g.standard_normal((3, 3, 2, 2)).astype(np.float32)  # (rows, cols, in, multiplier): 4 channels
    scale = find_channel_scale(depthwise, (depthwise * ratio.reshape(2, 2)).astype(np.float32), 4)
    assert scale is not None and np.allclose(scale(bias_gradient), bias_gradient / ratio)


def test_no_scale_where_the_kernels_are_equal_or_not_proportional():
    g = np.random.default_rng(3)
    a = g.standard_normal((3, 3, 2, 4)).astype(np.float32)
    assert find_channel_scale(a, a.copy(), 4) is None
    assert find_channel_scale(a, g.standard_normal(a.shape).astype(np.float32), 4) is None
    b = a * 2
    b[0, 0, 0, 0] += 0.1  # proportional but for one element
    assert find_channel_scale(a, b, 4) is None
    assert find_channel_scale(a, a * 2, 5) is None  # no trailing axes make 5 channels


def test_a_flipped_kernel_scaled_per_gate_column_maps_its_gradient_flipped_and_divided():
    from kdiff.element_maps import find_scaled_map

    g = np.random.default_rng(4)
    a = g.standard_normal((3, 3, 2, 8)).astype(np.float32)  # a ConvLSTM2D's kernel: 4 gates x 2 filters
    ratio = np.repeat([1.2, 1.2, 1.0, 1.2], 2)  # hard_sigmoid's gates (i, f, o) rescaled, c not
    found = find_scaled_map(a, (a[::-1, ::-1] * ratio).astype(np.float32))
    assert found is not None and found.element_map.reversed == (0, 1) and np.allclose(found.ratio, ratio)
    gradient = g.standard_normal(a.shape)
    assert np.allclose(found(gradient), gradient[::-1, ::-1] / ratio)
    assert find_scaled_map(a, a[::-1, ::-1].copy()) is None  # a flip alone is an ElementMap's, not a scale's


def test_weights_pair_in_order_where_both_sides_hold_as_many_and_by_name_where_one_holds_more():
    from kdiff.gradients import _paired_weights

    kernel, bias = np.ones((3, 3, 2, 4)), np.zeros(4)
    same = _paired_weights([("conv/kernel", kernel), ("conv/bias", bias)], [("c/kernel:0", kernel), ("c/bias:0", bias)])
    assert [(index, name) for index, (name, _), _ in same] == [(0, "conv/kernel"), (1, "conv/bias")]
    # side A's conv has no bias (its BatchNormalization holds the shift), side B's folded conv has one
    folded = _paired_weights([("conv/kernel", kernel)], [("conv/kernel", kernel * 2), ("conv/bias", bias)])
    assert len(folded) == 1 and folded[0][0] == 0 and np.array_equal(folded[0][2], kernel * 2)
    assert _paired_weights([("a/gamma", bias)], [("b/kernel", kernel), ("b/bias", bias)]) is None
