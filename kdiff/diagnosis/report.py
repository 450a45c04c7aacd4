"""The diagnosis stage of a diff: a report in, the same report with its findings out: the sample
that fits side B only transposed (kdiff.diagnosis.input_layout), then, where the models diverge,
every cause named and proven, one fix after another (kdiff.diagnosis.repair)."""
from __future__ import annotations

from dataclasses import replace

from kdiff.report import DiffReport


def diagnosed(session, sample, report: DiffReport, progress) -> DiffReport:
    if session.bridge.moved_inputs and not session.bridge.built:
        from kdiff.diagnosis.input_layout import prove_input_layout

        report = replace(report, findings=report.findings + prove_input_layout(session, session.tolerances))
    if report.exit_code == 0:
        return report
    from kdiff.diagnosis.repair import diagnose

    found = diagnose(session, sample, report, session.tolerances, progress)
    return replace(report, findings=report.findings + found.findings, unexplained=found.unexplained,
                   repaired=found.repaired, notes=report.notes + found.not_checked)
