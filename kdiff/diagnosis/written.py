"""The written repair (``kdiff fix``, ``--write-fixed``): side B's model with every proven fix
applied, written in its framework's own format, then loaded afresh in a new worker, as a user
would, and compared with side A: only a model that reproduces side A is called verified."""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from kdiff.report import DiffReport


@dataclass(frozen=True)
class WrittenRepair:
    files: tuple
    verified: bool     # the written files, loaded afresh, reproduce side A on every layer
    message: str

    def to_json(self) -> dict:
        return {"files": list(self.files), "verified": self.verified, "message": self.message}


NOT_WRITTEN = "the models still diverge after every proven fix, so no repaired model was written"


def write_repair(session, report: DiffReport, folder: str, progress) -> WrittenRepair | tuple:
    """Have side B write its model as it is now, repairs included: the files it wrote; or, where a
    divergence is left unexplained, a WrittenRepair saying that nothing was written."""
    final = report.repaired or report
    if final.exit_code != 0:
        return WrittenRepair((), False, NOT_WRITTEN)
    progress.stage(f"writing side B's repaired model to {folder}")
    return tuple(session.clients["b"].save(str(Path(folder).resolve())))


def check_written(a, b, files: tuple, sample_path: str, options, progress) -> WrittenRepair:
    """Load what was written in a fresh worker and compare it with side A on the forward diff alone."""
    from kdiff.session import DiffSession

    model = files[0]
    weights = files[1] if model.endswith(".json") else None
    progress.stage("checking the written model against side A")
    # the written model states its layout itself: it is loaded as written, fed the sample in that layout
    check_options = replace(options, write_fixed=None, dump_dir=None, gradients=False, noise_floor=False)
    session = DiffSession(a, replace(b, model=model, weights=weights, layout=None), check_options, progress)
    sample = session.load_sample(sample_path)
    with session:
        check = session.compare(sample, sample_path)
    if check.exit_code == 0:
        return WrittenRepair(files, True, f"loaded afresh in {b.backend}, the written model matches "
                                          f"{a.backend} on all {len(check.layers)} layers")
    first = check.first_divergence
    where = f"first divergence at {first[1].name}" if first else "layers differ"
    return WrittenRepair(files, False, f"the written model does not reproduce {a.backend}: {where}")
