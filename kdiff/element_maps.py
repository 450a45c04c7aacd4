"""How side B holds side A's weight: the same elements, transposed and/or reversed along axes
(a Keras 1 'th' kernel read by Keras 3, or a kernel flipped by a repair). Gradients, optimizer
slots and updates of that weight are mapped the same way before they are compared."""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ElementMap:
    axes: tuple        # A's axes in B's order (a transpose)
    reversed: tuple    # axes (after the transpose) that are reversed

    def __call__(self, a_array: np.ndarray) -> np.ndarray:
        moved = a_array.transpose(self.axes)
        return np.flip(moved, self.reversed) if self.reversed else moved

    @property
    def is_identity(self) -> bool:
        return self.axes == tuple(sorted(self.axes)) and not self.reversed


def find_element_map(a: np.ndarray, b: np.ndarray) -> ElementMap | None:
    """The transpose-and-reverse that turns ``a`` into exactly ``b``, the plainest first; None if none does."""
    for axes in itertools.permutations(range(a.ndim)):
        if tuple(a.shape[i] for i in axes) != b.shape:
            continue
        for count in range(a.ndim + 1):
            for reversed_axes in itertools.combinations(range(a.ndim), count):
                candidate = ElementMap(tuple(axes), reversed_axes)
                if np.array_equal(candidate(a), b):
                    return candidate
    return None
