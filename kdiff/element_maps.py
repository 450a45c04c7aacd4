"""How side B holds side A's weight: the same elements, transposed and/or reversed along axes
(a Keras 1 'th' kernel read by Keras 3, or a kernel flipped by a repair), possibly inside a
larger array of zeros (a kernel grown by the padding-same-asymmetry repair). Gradients,
optimizer slots and updates of that weight are mapped the same way before they are compared."""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ElementMap:
    axes: tuple        # A's axes in B's order (a transpose)
    reversed: tuple    # axes (after the transpose) that are reversed
    window: tuple = () # ((start, stop) per axis) of B's array that holds A's elements; (): all of it

    def __call__(self, a_array: np.ndarray) -> np.ndarray:
        moved = a_array.transpose(self.axes)
        return np.flip(moved, self.reversed) if self.reversed else moved

    def part_of_b(self, b_array: np.ndarray) -> np.ndarray:
        """The elements of side B's array that correspond to side A's."""
        return b_array[tuple(slice(start, stop) for start, stop in self.window)] if self.window else b_array

    @property
    def is_identity(self) -> bool:
        return self.axes == tuple(sorted(self.axes)) and not self.reversed and not self.window


MAX_WINDOWS = 256  # placements of A's array inside a larger B that are tried


def find_element_map(a: np.ndarray, b: np.ndarray, within_zeros: bool = False) -> ElementMap | None:
    """The transpose-and-reverse that turns ``a`` into exactly ``b``, the plainest first; with
    ``within_zeros``, also into a window of a larger ``b`` that is zero elsewhere. None if none does."""
    for axes in itertools.permutations(range(a.ndim)):
        shape = tuple(a.shape[i] for i in axes)
        if shape == b.shape:
            windows = [()]
        elif within_zeros and b.ndim == a.ndim and all(x <= y for x, y in zip(shape, b.shape)):
            windows = list(itertools.islice(_zero_surrounded_windows(shape, b), MAX_WINDOWS))
        else:
            continue
        for window in windows:
            part = ElementMap((), (), window).part_of_b(b)
            for count in range(a.ndim + 1):
                for reversed_axes in itertools.combinations(range(a.ndim), count):
                    candidate = ElementMap(tuple(axes), reversed_axes, window)
                    if np.array_equal(candidate(a), part):
                        return candidate
    return None


def _zero_surrounded_windows(shape: tuple, b: np.ndarray):
    """Windows of ``b`` of the given shape outside which every element of ``b`` is zero."""
    for starts in itertools.product(*(range(size - inner + 1) for inner, size in zip(shape, b.shape))):
        window = tuple((start, start + inner) for start, inner in zip(starts, shape))
        outside = b.copy()
        outside[tuple(slice(start, stop) for start, stop in window)] = 0
        if not outside.any():
            yield window


@dataclass(frozen=True)
class RowPermutation:
    """Side B holds side A's 2-D kernel with its rows permuted: a Dense after a Flatten whose rows a
    right port reordered for the other layout (kdiff.diagnosis.rules.flatten_order). The ElementMap
    interface: A's array -> as B holds it."""

    order: tuple
    is_identity: bool = False

    def __call__(self, a_array: np.ndarray) -> np.ndarray:
        return a_array[np.asarray(self.order)]

    def part_of_b(self, b_array: np.ndarray) -> np.ndarray:
        return b_array


def find_row_permutation(a: np.ndarray, b: np.ndarray, before_flatten: tuple) -> RowPermutation | None:
    """The reorder of a kernel's rows from one layout's flatten order to the other's (the channels axis
    first or last, of the tensor before the Flatten as stated or read in the other layout) that turns
    ``a`` into exactly ``b``; None if none does."""
    shape = tuple(int(d) for d in before_flatten)
    if a.ndim != 2 or a.shape != b.shape or len(shape) < 2 or int(np.prod(shape)) != a.shape[0]:
        return None
    rows = np.arange(a.shape[0])
    for stated in (shape, (shape[-1], *shape[:-1]), (*shape[1:], shape[0])):
        grid = rows.reshape(stated)
        for moved in (np.moveaxis(grid, 0, -1), np.moveaxis(grid, -1, 0)):
            order = moved.ravel()
            if not np.array_equal(order, rows) and np.array_equal(a[order], b):
                return RowPermutation(tuple(int(i) for i in order))
    return None


@dataclass(frozen=True)
class GradientScale:
    """Side B holds side A's weight scaled per output channel, ``b = a * ratio``: a BatchNormalization
    folded into the conv or Dense before it, on one side only (the kernel scaled by gamma / sqrt(var + eps),
    the bias shifted and scaled by the same). The two are then different parameters of the same function,
    and the gradient of B's is A's divided by the ratio (the bias's too, for which ``b = a * ratio`` does not
    hold but the chain rule does). The ElementMap interface, for gradients only (an optimizer's slots and
    updates do not scale so): A's gradient -> as B's would be. ``ratio`` broadcasts on the trailing axes."""

    ratio: np.ndarray
    is_identity: bool = False
    element_map: "ElementMap | None" = None  # A's weight also moved so (a kernel flipped, then scaled)

    def __call__(self, a_array: np.ndarray) -> np.ndarray:
        if self.element_map is not None and a_array.ndim == len(self.element_map.axes):
            a_array = self.element_map(a_array)
        fits = a_array.shape[a_array.ndim - self.ratio.ndim:] == self.ratio.shape
        ratio = self.ratio if fits else self.ratio.reshape(-1)  # a bias: the channels flat
        return (a_array / ratio).astype(a_array.dtype)

    def part_of_b(self, b_array: np.ndarray) -> np.ndarray:
        return b_array


def channel_axes(shape: tuple, channels: int) -> int | None:
    """How many trailing axes of a kernel of this shape hold its output channels, their sizes multiplying to
    ``channels`` (a Conv or Dense: 1, the last; a DepthwiseConv: 2, input channels x multiplier); None if none do."""
    return next((k for k in range(1, len(shape)) if int(np.prod(shape[-k:])) == channels), None)


FOLD_ROUNDING = 1e-5  # |b - a * ratio| / max |b| of a fold computed in float32 (or float64, then rounded)


def find_channel_scale(a_kernel: np.ndarray, b_kernel: np.ndarray, channels: int) -> GradientScale | None:
    """The per-output-channel ratio with ``b_kernel == a_kernel * ratio`` within a float32 fold's rounding, the
    output channels being the kernel's trailing axes whose sizes multiply to ``channels`` (a Conv or Dense:
    the last; a DepthwiseConv: input channels x multiplier); None if there is none or it is 1 everywhere."""
    if a_kernel.shape != b_kernel.shape or a_kernel.ndim < 2 or channels < 1:
        return None
    trailing = channel_axes(a_kernel.shape, channels)
    if trailing is None:
        return None
    a = a_kernel.astype(np.float64).reshape(-1, channels)
    b = b_kernel.astype(np.float64).reshape(-1, channels)
    norms = (a * a).sum(axis=0)
    if not np.all(norms > 0) or not np.all(np.isfinite(b)):
        return None
    ratio = (a * b).sum(axis=0) / norms
    if np.max(np.abs(b - a * ratio)) > FOLD_ROUNDING * max(float(np.max(np.abs(b))), np.finfo(np.float32).tiny):
        return None
    if not np.all(np.abs(ratio) > 0) or np.allclose(ratio, 1.0, rtol=FOLD_ROUNDING, atol=0):
        return None
    return GradientScale(ratio.reshape(a_kernel.shape[-trailing:]))


def find_scaled_map(a_kernel: np.ndarray, b_kernel: np.ndarray) -> GradientScale | None:
    """A kernel that side B holds as side A's, its spatial axes perhaps reversed (Theano's flip, repaired),
    scaled per output channel (its last axis): a fix that rescales weights for another definition of the
    activation, such as the 1.2 of hard_sigmoid's gate columns. None where there is no such map."""
    if a_kernel.shape != b_kernel.shape or a_kernel.ndim < 2:
        return None
    spatial = range(a_kernel.ndim - 2)
    for count in range(len(spatial) + 1):
        for reversed_axes in itertools.combinations(spatial, count):
            moved = ElementMap(tuple(range(a_kernel.ndim)), reversed_axes)
            scale = find_channel_scale(moved(a_kernel), b_kernel, b_kernel.shape[-1])
            if scale is not None:
                return GradientScale(scale.ratio, element_map=moved if reversed_axes else None)
    return None
