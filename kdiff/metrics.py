"""Error metrics between two arrays, computed in float64 over fixed-size chunks so that
the coordinator's memory stays bounded by the two arrays themselves."""
from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import numpy as np

CHUNK = 1 << 16  # elements per chunk: its few buffers stay in cache and are reused from chunk to chunk


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
    values is exact or within one rounding of it), in buffers reused from chunk to chunk; each
    chunk's sums are pairwise or BLAS sums, accumulated over the chunks in float64. The cosine
    comes from the squared norms of a, b and a - b, which stays accurate near 1: an error in the
    norms of a and b moves it only to second order."""
    return Measured(a, b, tolerance).judged(tolerance)


class Measured:
    """One pass over two arrays (see compare_arrays): every metric, and each side's largest finite
    |value| (``scale_a``, ``scale_b``: what a tolerance may be sized from). Given the tolerance up
    front, the pass also counts the elements outside it; otherwise ``judged`` counts them afterwards,
    reading the arrays again only where the largest difference exceeds the tolerance's atol."""

    def __init__(self, a: np.ndarray, b: np.ndarray, tolerance: Tolerance | None = None):
        if a.shape != b.shape:
            raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
        dtype = np.result_type(a.dtype, b.dtype)
        if dtype.kind != "f" or dtype.itemsize < 4:
            dtype = np.dtype(np.float64)
        self.flat_a, self.flat_b, self.dtype = a.reshape(-1), b.reshape(-1), dtype
        self.totals = totals = _Totals(tolerance, dtype)
        for x, y in self._chunks():
            if not totals.add_finite(x, y):
                totals.add_with_specials(x, y)
        self.scale_a, self.scale_b = totals.scale_a, totals.scale_b

    def judged(self, tolerance: Tolerance) -> LayerMetrics:
        totals = self.totals
        outside = totals.outside  # (elements NaN or infinite on one side only, and those counted in the pass)
        if totals.tolerance is None and totals.max_finite_diff > tolerance.atol:
            outside += self._count_outside(tolerance)
        return totals.metrics(self.flat_a.size, outside)

    def _count_outside(self, tolerance: Tolerance) -> int:
        diff, scale = (buffer for buffer in self.totals.buffers[:2])
        mask = self.totals.outside_mask
        count = 0
        for x, y in self._chunks():
            size = x.size
            with np.errstate(invalid="ignore", over="ignore"):  # NaN and infinities compare False here
                np.abs(np.subtract(x, y, out=diff[:size]), out=diff[:size])
                np.maximum(np.abs(x, out=scale[:size]), np.abs(y, out=self.totals.buffers[2][:size]),
                           out=scale[:size])
                limit = np.multiply(scale[:size], tolerance.rtol, out=scale[:size])
                limit += tolerance.atol
                count += int(np.count_nonzero(np.greater(diff[:size], limit, out=mask[:size])))
        return count

    def _chunks(self):
        for start in range(0, self.flat_a.size, CHUNK):
            yield (self.flat_a[start:start + CHUNK].astype(self.dtype, copy=False),
                   self.flat_b[start:start + CHUNK].astype(self.dtype, copy=False))


def largest_finite_abs(arrays) -> float:
    """The largest finite |value| over the arrays (0 for none), without copying them."""
    largest = 0.0
    for array in arrays:
        array = np.asarray(array)
        if not array.size:
            continue
        if array.dtype.kind in "biu":
            largest = max(largest, float(np.abs(array.astype(np.float64)).max()))
            continue
        top, bottom = float(array.max()), float(array.min())
        if math.isfinite(top) and math.isfinite(bottom):
            largest = max(largest, top, -bottom)
            continue
        flat = array.reshape(-1)
        for start in range(0, flat.size, CHUNK):
            values = np.abs(flat[start:start + CHUNK])
            values = values[np.isfinite(values)]
            if values.size:
                largest = max(largest, float(values.max()))
    return largest


class _Scratch(threading.local):
    """Each thread's chunk-sized buffers, one set per dtype, made once and reused by every comparison
    the thread runs: fresh ones each time cost page faults and kept them out of the cache."""

    def __init__(self):
        self.by_dtype: dict[np.dtype, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def get(self, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(three element buffers, a boolean mask, ones), each CHUNK long."""
        if dtype not in self.by_dtype or self.by_dtype[dtype][1].size < CHUNK:
            self.by_dtype[dtype] = (np.empty((3, CHUNK), dtype), np.empty(CHUNK, bool), np.ones(CHUNK, dtype))
        return self.by_dtype[dtype]


_scratch = _Scratch()


class _Totals:
    """Running maxima and float64 sums over the chunks of one comparison; its element arithmetic
    runs in this thread's scratch buffers (chunks are at most CHUNK long)."""

    def __init__(self, tolerance: Tolerance | None, dtype: np.dtype):
        self.tolerance = tolerance  # None: the elements outside a tolerance are counted later (Measured.judged)
        self.buffers, self.outside_mask, self.ones = _scratch.get(dtype)  # ones: a sum as a BLAS dot product
        self.max_abs = self.max_rel = 0.0
        self.sum_abs = self.norm_a = self.norm_b = self.norm_diff = 0.0
        self.outside = self.nan_a = self.nan_b = self.inf_a = self.inf_b = 0
        self.scale_a = self.scale_b = self.max_finite_diff = 0.0
        self.huge_norms = [0.0, 0.0, 0.0]  # norms of float64 chunks whose squares overflow, in units of 2**1200

    def add_finite(self, x: np.ndarray, y: np.ndarray) -> bool:
        """Add a chunk whose values are all finite; False (and nothing added) otherwise."""
        size = x.size
        if not size:
            return True
        diff, scale, spare = (buffer[:size] for buffer in self.buffers)
        with np.errstate(invalid="ignore", over="ignore"):  # inf - inf, overflowing differences: handled below
            np.abs(np.subtract(x, y, out=diff), out=diff)
        np.abs(x, out=scale)
        np.abs(y, out=spare)
        top_a, top_b, chunk_max = float(scale.max()), float(spare.max()), float(diff.max())  # (max passes NaN on)
        if not (math.isfinite(top_a) and math.isfinite(top_b)):
            return False
        # squares of values below 2**-40 (a deep layer's gradient) are subnormal or nearly, and the CPU
        # computes with those dozens of times slower: such a chunk is scaled up by a power of two (exactly)
        unit = 1.0
        if 0.0 < max(top_a, top_b) < 2.0 ** -40:
            unit = math.ldexp(1.0, min(100, -math.frexp(max(top_a, top_b))[1]))  # (2**100 is a float32 too)
            for buffer in (diff, scale, spare):
                buffer *= unit
        with np.errstate(over="ignore"):  # overflowing squares: handled below
            norms = [float(np.dot(v, v)) / unit / unit for v in (scale, spare, diff)]
        if not (all(map(math.isfinite, norms)) and math.isfinite(chunk_max)):
            if diff.dtype != np.float64:
                # finite values whose differences or squares overflow the dtype: this chunk in float64
                wide = _Totals(self.tolerance, np.dtype(np.float64))
                wide.add_finite(x.astype(np.float64), y.astype(np.float64))
                self._merge(wide)
                return True
            # squares beyond float64: these norms in units of 2**1200 (exact scaling by a power of two)
            norms = [float(np.dot(v, v)) for v in (np.ldexp(w, -600) for w in (scale, spare, diff))]
            self.huge_norms = [total + norm for total, norm in zip(self.huge_norms, norms)]
            norms = [0.0, 0.0, 0.0]
        self.norm_a += norms[0]
        self.norm_b += norms[1]
        self.norm_diff += norms[2]
        self.max_abs = max(self.max_abs, chunk_max)
        self.max_finite_diff = max(self.max_finite_diff, chunk_max)
        self.sum_abs += float(np.dot(diff, self.ones[:size])) / unit
        self.scale_a = max(self.scale_a, top_a)
        self.scale_b = max(self.scale_b, top_b)
        np.maximum(scale, spare, out=scale)
        if self.tolerance is not None and chunk_max > self.tolerance.atol:  # else none is outside atol + rtol·scale
            limit = np.multiply(scale, self.tolerance.rtol, out=spare)
            limit += self.tolerance.atol * unit  # (scaled elements against the tolerance scaled alike)
            self.outside += int(np.count_nonzero(np.greater(diff, limit, out=self.outside_mask[:size])))
        # where scale is 0 the difference is 0 too: 0/0 gives NaN, which fmax passes over; the ratio
        # does not depend on the unit
        with np.errstate(invalid="ignore"):
            chunk_rel = float(np.fmax.reduce(np.divide(diff, scale, out=scale)))
        if chunk_rel > self.max_rel:
            self.max_rel = chunk_rel
        return True

    def _merge(self, other: "_Totals") -> None:
        self.max_abs, self.max_rel = max(self.max_abs, other.max_abs), max(self.max_rel, other.max_rel)
        self.sum_abs += other.sum_abs
        self.norm_a += other.norm_a
        self.norm_b += other.norm_b
        self.norm_diff += other.norm_diff
        self.huge_norms = [mine + theirs for mine, theirs in zip(self.huge_norms, other.huge_norms)]
        self.outside += other.outside
        self.scale_a, self.scale_b = max(self.scale_a, other.scale_a), max(self.scale_b, other.scale_b)
        self.max_finite_diff = max(self.max_finite_diff, other.max_finite_diff)

    def add_with_specials(self, x: np.ndarray, y: np.ndarray) -> None:
        x_nan, y_nan, x_inf, y_inf = np.isnan(x), np.isnan(y), np.isinf(x), np.isinf(y)
        self.nan_a += int(x_nan.sum()); self.nan_b += int(y_nan.sum())
        self.inf_a += int(x_inf.sum()); self.inf_b += int(y_inf.sum())
        same_special = (x_nan & y_nan) | (x_inf & y_inf & (np.sign(x) == np.sign(y)))
        finite = np.isfinite(x) & np.isfinite(y)
        broken = int(np.count_nonzero(~finite & ~same_special))  # NaN or Inf on one side only, or opposite infinities
        if broken:
            self.outside += broken
            self.max_abs = self.max_rel = math.inf
        self.add_finite(x[finite], y[finite])

    def metrics(self, size: int, outside: int) -> LayerMetrics:
        norm_a, norm_b, norm_diff = self.norm_a, self.norm_b, self.norm_diff
        if any(self.huge_norms):  # all in units of 2**1200 (the cosine does not depend on the unit)
            norm_a, norm_b, norm_diff = (huge + math.ldexp(norm, -1200)
                                         for huge, norm in zip(self.huge_norms, (norm_a, norm_b, norm_diff)))
        if norm_a == 0.0 and norm_b == 0.0:
            cosine = 1.0
        elif norm_a == 0.0 or norm_b == 0.0:
            cosine = 0.0
        else:
            dot = (norm_a + norm_b - norm_diff) / 2
            cosine = max(-1.0, min(1.0, dot / math.sqrt(norm_a * norm_b)))
        return LayerMetrics(
            max_abs=self.max_abs, max_rel=self.max_rel, mean_abs=self.sum_abs / size if size else 0.0,
            cosine=cosine, out_of_tolerance=outside / size if size else 0.0,
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
