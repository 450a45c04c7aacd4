"""Rendering: reports and errors printed into Console(record=True, width=100), compared as text."""
import math
import textwrap

from rich.console import Console

from kdiff.errors import InputError, WorkerFailure
from kdiff.metrics import LayerMetrics, Tolerance
from kdiff.report import BackendInfo, DiffReport, LayerResult
from kdiff.ui.errors import render_error
from kdiff.ui.report_view import error_bar, render_report


def metrics(max_abs, max_rel, out=0.0):
    return LayerMetrics(max_abs=max_abs, max_rel=max_rel, mean_abs=max_abs / 2, cosine=1.0 - max_rel / 10,
                        out_of_tolerance=out, nan_a=0, nan_b=0, inf_a=0, inf_b=0, size=100)


def report(layers):
    backends = (BackendInfo("a", "theano", {"keras": "2.3.1", "theano": "1.1.2"}, "cpu", "/a/python", "theano"),
                BackendInfo("b", "tensorflow", {"keras": "3.15.1"}, "cpu", "/b/python", "tensorflow"))
    return DiffReport(backends=backends, layers=tuple(layers), tolerance=Tolerance(),
                      sample={"path": "x.npy", "shape": [4, 3], "dtype": "<f4"})


def rendered(fn, *args):
    console = Console(record=True, width=100)
    fn(*args, console)
    return "\n".join(line.rstrip() for line in console.export_text().splitlines())


DIVERGED = report([
    LayerResult("conv2d_1", "Conv2D", (4, 8, 16, 16), (4, 8, 16, 16), "diverged", metrics(7.1e-3, 0.52, 0.93)),
    LayerResult("flatten_1", "Flatten", (4, 2048), (4, 2048), "propagated", metrics(7.1e-3, 0.52, 0.9)),
    LayerResult("dense_1", "Dense", (4, 10), (4, 10), "match", metrics(0.0, 0.0)),
    LayerResult("extra", "Dropout", (4, 10), None, "only-a", note="present on side A only"),
])


def test_report_with_a_divergence():
    assert rendered(render_report, DIVERGED) == textwrap.dedent("""\
        A: theano (keras 2.3.1, theano 1.1.2; cpu)
        B: tensorflow (keras 3.15.1; cpu)

         #   layer          class     shape        max abs    max rel     cosine   rel error   status
         ────────────────────────────────────────────────────────────────────────────────────────────────
         0   conv2d_1       Conv2D    4x8x16x16   7.10e-03   5.20e-01   0.948000   ████████    ▶ diverged
         1   flatten_1      Flatten   4x2048      7.10e-03   5.20e-01   0.948000   ████████    propagated
         2   dense_1        Dense     4x10               0          0   1.000000   ·           match
         3   extra          Dropout   4x10               -          -          -               only-a

        First divergence: conv2d_1 (Conv2D), layer 0
          its inputs match on both sides, but its output does not: max abs 7.10e-03, max rel 5.20e-01, 93.0%
        of elements outside atol 1e-05 + rtol 0.0001·|x|
          1 layer(s) diverge on their own, 1 carry an earlier divergence, 1 match, 1 exist on one side only.""")


def test_report_where_everything_matches():
    text = rendered(render_report, report([LayerResult("d", "Dense", (2, 3), (2, 3), "match", metrics(0, 0))]))
    assert text.splitlines()[-1] == "All 1 layers match (atol 1e-05, rtol 0.0001)."


def test_error_bar_is_logarithmic():
    assert [error_bar(x) for x in (None, 0.0, 1e-9, 1e-7, 1e-4, 1e-2, 0.5, 3.0, math.inf)] == [
        "", "·", "·", "█", "████", "██████", "████████", "████████", "████████"]


def test_input_error_rendering():
    error = InputError("sample-shape", "x.npy has shape (4, 3) but the model expects (batch, 3, 16, 16)",
                       "save the sample in the model's input shape, batch first")
    assert rendered(render_error, error) == textwrap.dedent("""\
        error: x.npy has shape (4, 3) but the model expects (batch, 3, 16, 16)
          reference: sample-shape
          hint: save the sample in the model's input shape, batch first""")


def test_worker_failure_rendering_names_side_backend_and_command():
    error = WorkerFailure("b", "tensorflow", "forward", "the worker process was killed by signal 9",
                          "the worker's log is /tmp/w.log", "last line of the log")
    assert rendered(render_error, error) == textwrap.dedent("""\
        error: worker b (tensorflow) failed during 'forward': the worker process was killed by signal 9
          reference: worker-failed
          hint: the worker's log is /tmp/w.log
          last line of the log""")


def test_narrow_terminals_get_the_compact_columns():
    console = Console(record=True, width=70)
    render_report(DIVERGED, console)
    lines = [line.rstrip() for line in console.export_text().splitlines()]
    assert lines[3].split() == ["layer", "class", "max", "rel", "rel", "error", "status"]
    assert lines[5].split() == ["conv2d_1", "Conv2D", "5.20e-01", "████████", "▶", "diverged"]
    assert all(len(line) <= 70 for line in lines)


def test_a_derived_tolerance_is_explained_where_a_layer_fails_it():
    judged = Tolerance(4.6e-6, 1.6e-6, "float32 2ε·√K, K=1152 (Conv2D kernel 3x3x128x8, 8 outputs); "
                                        "atol = rtol·2.91 (the smaller side's max |x|)")
    derived = DiffReport(backends=DIVERGED.backends, tolerance=None, sample=DIVERGED.sample, layers=(
        LayerResult("conv2d_1", "Conv2D", (4, 8, 16, 16), (4, 8, 16, 16), "diverged", metrics(7.1e-3, 0.52, 0.93),
                    tolerance=judged),))
    assert rendered(render_report, derived).split("\n\n")[-1] == textwrap.dedent("""\
        First divergence: conv2d_1 (Conv2D), layer 0
          its inputs match on both sides, but its output does not: max abs 7.10e-03, max rel 5.20e-01, 93.0%
        of elements outside atol 4.6e-06 + rtol 1.6e-06·|x|
          tolerance: float32 2ε·√K, K=1152 (Conv2D kernel 3x3x128x8, 8 outputs); atol = rtol·2.91 (the
        smaller side's max |x|)
          1 layer(s) diverge on their own, 0 carry an earlier divergence, 0 match.""")


def test_a_match_under_derived_tolerances_says_so():
    text = rendered(render_report, DiffReport(backends=DIVERGED.backends, tolerance=None, sample=DIVERGED.sample,
                                              layers=(LayerResult("d", "Dense", (2, 3), (2, 3), "match",
                                                                  metrics(0, 0)),)))
    assert text.splitlines()[-1] == "All 1 layers match (tolerances derived per layer from dtype and reduction length)."
