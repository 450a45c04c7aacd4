"""For a test suite: assert that a port matches its original, layer by layer.

    from kdiff.testing import assert_models_match

    def test_my_port_matches_theano():
        assert_models_match("model.json", "weights.h5", "sample.npy", b="tensorflow:port.keras")

It fails with the first divergence's rows and the findings (what differs, the cause kdiff
proved, the fix and its code) as plain text, the same report the command line prints."""
from __future__ import annotations

import io

from rich.console import Console

from kdiff.report import DiffReport


def assert_models_match(model, weights=None, sample=None, **options) -> DiffReport:
    """kdiff.compare with the same arguments; an AssertionError unless every layer matches. Returns the report."""
    from kdiff.api import compare

    report = compare(model, weights, sample, **options)
    if report.exit_code != 0:
        raise AssertionError(mismatch_message(report))
    return report


def mismatch_message(report: DiffReport, width: int = 100) -> str:
    """The report as the command line renders it, as plain text (no colours), for a failing test."""
    from kdiff.ui.report_view import render_report

    console = Console(file=io.StringIO(), record=True, width=width, color_system=None, force_terminal=False)
    render_report(report, console)
    first = report.first_divergence
    where = f"first divergence at {first[1].name} ({first[1].class_name})" if first else "the models differ"
    return f"the models do not match: {where}\n" + console.export_text()
