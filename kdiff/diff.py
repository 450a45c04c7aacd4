"""``kdiff MODEL WEIGHTS SAMPLE`` as named stages, each returning plain data that the next takes:
the session (kdiff.session: environments, workers, load, alignment, tolerances), the comparison
(kdiff.comparison: noise floor, forward and backward passes, classification), the diagnosis
(kdiff.diagnosis.report) and, with ``options.write_fixed``, the written repair
(kdiff.diagnosis.written)."""
from __future__ import annotations

from dataclasses import replace

from kdiff.diagnosis.report import diagnosed
from kdiff.diagnosis.written import WrittenRepair, check_written, write_repair
from kdiff.progress import Progress
from kdiff.report import DiffReport
from kdiff.session import DiffOptions, DiffSession, Side


def run_diff(a: Side, b: Side, sample_path: str, options: DiffOptions = DiffOptions(),
             progress: Progress = Progress(), diagnose: bool = True) -> DiffReport:
    """Compare; where the models diverge, name and prove the causes; and with ``options.write_fixed``,
    write side B's repaired model and prove that it matches."""
    session = DiffSession(a, b, options, progress)
    sample = session.load_sample(sample_path)  # a bad sample fails before anything starts
    with session:
        report = session.compare(sample, sample_path)
        if diagnose:
            report = diagnosed(session, sample, report, progress)
        if options.write_fixed is None:
            return report
        written = write_repair(session, report, options.write_fixed, progress)
    if isinstance(written, WrittenRepair):
        return replace(report, written=written)
    return replace(report, written=check_written(a, b, written, sample_path, options, progress))
