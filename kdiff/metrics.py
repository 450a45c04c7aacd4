"""Error metrics between two arrays, computed in float64 over fixed-size chunks so that
the coordinator's memory stays bounded by the two arrays themselves."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

CHUNK = 1 << 20  # elements per chunk


@dataclass(frozen=True)
class Tolerance:
    """An element matches when ``|a - b| <= atol + rtol * max(|a|, |b|)``."""

    atol: float = 1e-5
    rtol: float = 1e-4


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
    so does an infinity of the same sign on both sides."""
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    flat_a, flat_b = a.reshape(-1), b.reshape(-1)
    size = flat_a.size
    max_abs = max_rel = sum_abs = dot = norm_a = norm_b = 0.0
    outside = nan_a = nan_b = inf_a = inf_b = 0
    for start in range(0, size, CHUNK):
        x = flat_a[start:start + CHUNK].astype(np.float64)
        y = flat_b[start:start + CHUNK].astype(np.float64)
        x_nan, y_nan = np.isnan(x), np.isnan(y)
        x_inf, y_inf = np.isinf(x), np.isinf(y)
        nan_a += int(x_nan.sum()); nan_b += int(y_nan.sum())
        inf_a += int(x_inf.sum()); inf_b += int(y_inf.sum())
        same_special = (x_nan & y_nan) | (x_inf & y_inf & (np.sign(x) == np.sign(y)))
        finite = np.isfinite(x) & np.isfinite(y)
        broken = ~finite & ~same_special  # NaN or Inf on one side only, or opposite infinities
        outside += int(broken.sum())
        if broken.any():
            max_abs = max_rel = math.inf
        x, y = x[finite], y[finite]
        diff = np.abs(x - y)
        scale = np.maximum(np.abs(x), np.abs(y))
        if diff.size:
            max_abs = max(max_abs, float(diff.max()))
            nonzero = scale > 0
            if nonzero.any():
                max_rel = max(max_rel, float((diff[nonzero] / scale[nonzero]).max()))
            outside += int((diff > tolerance.atol + tolerance.rtol * scale).sum())
        sum_abs += float(diff.sum())
        dot += float(x @ y); norm_a += float(x @ x); norm_b += float(y @ y)
    if norm_a == 0.0 and norm_b == 0.0:
        cosine = 1.0
    elif norm_a == 0.0 or norm_b == 0.0:
        cosine = 0.0
    else:
        cosine = dot / math.sqrt(norm_a * norm_b)
    return LayerMetrics(
        max_abs=max_abs, max_rel=max_rel, mean_abs=sum_abs / size if size else 0.0, cosine=cosine,
        out_of_tolerance=outside / size if size else 0.0,
        nan_a=nan_a, nan_b=nan_b, inf_a=inf_a, inf_b=inf_b, size=size,
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
