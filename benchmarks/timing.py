"""The one timing rule every benchmark here uses (the plain-framework scripts import it too, as
a sibling module, so they stay free of kdiff)."""
import statistics
import time


def median_time(fn, repeats: int) -> float:
    """Median seconds of ``repeats`` calls, after one warm-up call (tracing and compilation are
    not what is measured)."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)
