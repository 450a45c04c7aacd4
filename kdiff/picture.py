"""The first divergence's picture: both sides' values of its layer against each other, the spread of
their differences, and where along each axis the difference is largest. Plain data for the HTML
report, made once from the arrays the comparison pulled; small whatever the layer's size."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kdiff.protocol.json_values import json_number

MAX_POINTS = 2000      # values drawn against each other: a spread sample, with the worst always in it
WORST_POINTS = 50
HISTOGRAM_BINS = 40
MAX_AXIS_LENGTH = 4096  # a longer axis is summarised in this many buckets (the max over each)


@dataclass(frozen=True)
class AxisProfile:
    axis: int
    length: int
    bucket: int          # positions per value (1 unless the axis is longer than MAX_AXIS_LENGTH)
    max_abs: tuple       # max |a - b| over every other axis, at each position (or bucket) of this one


@dataclass(frozen=True)
class DivergencePicture:
    layer: str
    b_layer: str
    shape: tuple
    a_values: tuple      # the sampled values, side A's and side B's at the same positions
    b_values: tuple
    histogram_edges: tuple   # log10 |a - b|, HISTOGRAM_BINS + 1 edges
    histogram_counts: tuple
    exact: int               # elements where a == b (not on the log scale)
    non_finite: int          # elements where either side is NaN or Inf (left out of everything above)
    axes: tuple = ()         # AxisProfile for every axis after the batch axis

    def to_json(self) -> dict:
        return {
            "layer": self.layer, "b_layer": self.b_layer, "shape": list(self.shape),
            "a_values": [json_number(v) for v in self.a_values], "b_values": [json_number(v) for v in self.b_values],
            "histogram": {"log10_edges": [json_number(v) for v in self.histogram_edges],
                          "counts": list(self.histogram_counts), "exact": self.exact},
            "non_finite": self.non_finite,
            "axes": [{"axis": p.axis, "length": p.length, "bucket": p.bucket,
                      "max_abs": [json_number(v) for v in p.max_abs]} for p in self.axes],
        }


def divergence_picture(layer: str, b_layer: str, a: np.ndarray, b: np.ndarray) -> DivergencePicture | None:
    """The picture of one output (side B's already in side A's layout); None when the shapes differ."""
    if a.shape != b.shape or a.size == 0:
        return None
    a64, b64 = a.astype(np.float64, copy=False).ravel(), b.astype(np.float64, copy=False).ravel()
    finite = np.isfinite(a64) & np.isfinite(b64)
    difference = np.where(finite, np.abs(a64 - b64), 0.0)
    positions = _sampled_positions(difference, finite)
    nonzero = difference[finite & (difference > 0)]
    if nonzero.size:
        logs = np.log10(nonzero)
        low, high = float(logs.min()), float(logs.max())
        counts, edges = np.histogram(logs, bins=HISTOGRAM_BINS, range=(low, high if high > low else low + 1.0))
    else:
        counts, edges = np.zeros(HISTOGRAM_BINS, np.int64), np.linspace(-12, -11, HISTOGRAM_BINS + 1)
    return DivergencePicture(
        layer=layer, b_layer=b_layer, shape=tuple(int(d) for d in a.shape),
        a_values=tuple(float(v) for v in a64[positions]), b_values=tuple(float(v) for v in b64[positions]),
        histogram_edges=tuple(float(e) for e in edges), histogram_counts=tuple(int(c) for c in counts),
        exact=int(np.count_nonzero(finite & (difference == 0))), non_finite=int(np.count_nonzero(~finite)),
        axes=tuple(_axis_profile(difference.reshape(a.shape), axis) for axis in range(1, a.ndim)),
    )


def _sampled_positions(difference: np.ndarray, finite: np.ndarray) -> np.ndarray:
    """Up to MAX_POINTS flat positions of finite elements: the WORST_POINTS largest differences and an
    even spread of the rest, in order."""
    candidates = np.flatnonzero(finite)
    if candidates.size <= MAX_POINTS:
        return candidates
    worst = candidates[np.argpartition(difference[candidates], -WORST_POINTS)[-WORST_POINTS:]]
    spread = candidates[np.linspace(0, candidates.size - 1, MAX_POINTS - WORST_POINTS).astype(np.int64)]
    return np.union1d(worst, spread)


def _axis_profile(difference: np.ndarray, axis: int) -> AxisProfile:
    others = tuple(i for i in range(difference.ndim) if i != axis)
    along = difference.max(axis=others) if others else difference
    length = along.shape[0]
    bucket = -(-length // MAX_AXIS_LENGTH)
    if bucket > 1:
        padded = np.zeros(-(-length // bucket) * bucket)
        padded[:length] = along
        along = padded.reshape(-1, bucket).max(axis=1)
    return AxisProfile(axis=axis, length=int(length), bucket=int(bucket), max_abs=tuple(float(v) for v in along))
