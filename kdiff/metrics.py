"""Error metrics between two arrays, computed in float64 over fixed-size chunks so that
the coordinator's memory stays bounded by the two arrays themselves."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

CHUNK = 1 << 18  # elements per chunk: a few MB, so each pass over a chunk stays in cache


@dataclass(frozen=True)
class Tolerance:
    """An element matches when ``|a - b| <= atol + rtol * max(|a|, |b|)``; ``reason`` says why
    that size (kdiff.tolerances), "" for a tolerance given as is."""

    atol: float = 1e-5
    rtol: float = 1e-4
    reason: str = ""


@dataclass(frozen=True)
class LayerMetrics:
    max_abs: float
    max_rel: float      # max of |a - b| / max(|a|, |b|) over elements where either is non-zero
    mean_abs: float
    cosine: float       # 1.0 when both are all zeros
    out_of_tolerance: float  # share of elements outside the tolerance
    nan_a: int
    nan_b: int
    inf_a: int
    inf_b: int
    size: int

    @property
    def matches(self) -> bool:
        return self.out_of_tolerance == 0.0


def compare_arrays(a: np.ndarray, b: np.ndarray, tolerance: Tolerance) -> LayerMetrics:
    """Metrics of ``a`` against ``b`` (same shape). NaN where both are NaN counts as equal;
    so does an infinity of the same sign on both sides.

    Element arithmetic runs in the arrays' own float dtype (the difference of two float32
    values is exact or within one rounding of it); every sum accumulates in float64. The
    cosine comes from the squared norms of a, b and a - b, which stays accurate near 1."""
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    dtype = np.result_type(a.dtype, b.dtype)
    if dtype.kind != "f" or dtype.itemsize < 4:
        dtype = np.dtype(np.float64)
    flat_a, flat_b = a.reshape(-1), b.reshape(-1)
    totals = _Totals()
    for start in range(0, flat_a.size, CHUNK):
        x = flat_a[start:start + CHUNK].astype(dtype, copy=False)
        y = flat_b[start:start + CHUNK].astype(dtype, copy=False)
        with np.errstate(invalid="ignore", over="ignore"):  # inf - inf: handled as a special value below
            diff = x - y
        if np.isfinite(diff).all():
            totals.add_finite(x, y, diff, tolerance)
        else:
            totals.add_with_specials(x, y, tolerance)
    return totals.metrics(flat_a.size)


class _Totals:
    """Running maxima and float64 sums over the chunks of one comparison."""

    def __init__(self):
        self.max_abs = self.max_rel = 0.0
        self.sum_abs = self.norm_a = self.norm_b = self.norm_diff = 0.0
        self.outside = self.nan_a = self.nan_b = self.inf_a = self.inf_b = 0

    def add_finite(self, x: np.ndarray, y: np.ndarray, diff: np.ndarray, tolerance: Tolerance) -> None:
        if not diff.size:
            return
        abs_diff = np.abs(diff)
        scale = np.maximum(np.abs(x), np.abs(y))
        self.max_abs = max(self.max_abs, float(abs_diff.max()))
        # where scale is 0 the difference is 0 too, so the tiny floor only avoids 0/0
        self.max_rel = max(self.max_rel, float((abs_diff / np.maximum(scale, np.finfo(scale.dtype).tiny)).max()))
        self.outside += int(np.count_nonzero(abs_diff > tolerance.atol + tolerance.rtol * scale))
        self.sum_abs += float(abs_diff.sum(dtype=np.float64))
        self.norm_a += float(np.square(x).sum(dtype=np.float64))
        self.norm_b += float(np.square(y).sum(dtype=np.float64))
        self.norm_diff += float(np.square(diff).sum(dtype=np.float64))

    def add_with_specials(self, x: np.ndarray, y: np.ndarray, tolerance: Tolerance) -> None:
        x_nan, y_nan, x_inf, y_inf = np.isnan(x), np.isnan(y), np.isinf(x), np.isinf(y)
        self.nan_a += int(x_nan.sum()); self.nan_b += int(y_nan.sum())
        self.inf_a += int(x_inf.sum()); self.inf_b += int(y_inf.sum())
        same_special = (x_nan & y_nan) | (x_inf & y_inf & (np.sign(x) == np.sign(y)))
        finite = np.isfinite(x) & np.isfinite(y)
        broken = int(np.count_nonzero(~finite & ~same_special))  # NaN or Inf on one side only, or opposite infinities
        if broken:
            self.outside += broken
            self.max_abs = self.max_rel = math.inf
        x, y = x[finite], y[finite]
        self.add_finite(x, y, x - y, tolerance)

    def metrics(self, size: int) -> LayerMetrics:
        if self.norm_a == 0.0 and self.norm_b == 0.0:
            cosine = 1.0
        elif self.norm_a == 0.0 or self.norm_b == 0.0:
            cosine = 0.0
        else:
            dot = (self.norm_a + self.norm_b - self.norm_diff) / 2
            cosine = max(-1.0, min(1.0, dot / math.sqrt(self.norm_a * self.norm_b)))
        return LayerMetrics(
            max_abs=self.max_abs, max_rel=self.max_rel, mean_abs=self.sum_abs / size if size else 0.0,
            cosine=cosine, out_of_tolerance=self.outside / size if size else 0.0,
            nan_a=self.nan_a, nan_b=self.nan_b, inf_a=self.inf_a, inf_b=self.inf_b, size=size,
        )


def combine(parts: list[LayerMetrics]) -> LayerMetrics:
    """Metrics of a layer with several outputs, from each output's metrics."""
    if len(parts) == 1:
        return parts[0]
    size = sum(p.size for p in parts)
    return LayerMetrics(
        max_abs=max(p.max_abs for p in parts),
        max_rel=max(p.max_rel for p in parts),
        mean_abs=sum(p.mean_abs * p.size for p in parts) / size if size else 0.0,
        cosine=min(p.cosine for p in parts),
        out_of_tolerance=sum(p.out_of_tolerance * p.size for p in parts) / size if size else 0.0,
        nan_a=sum(p.nan_a for p in parts), nan_b=sum(p.nan_b for p in parts),
        inf_a=sum(p.inf_a for p in parts), inf_b=sum(p.inf_b for p in parts), size=size,
    )
