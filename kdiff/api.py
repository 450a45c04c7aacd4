"""kdiff from Python: the engine of the command line, called with the same defaults and checks.

    report = kdiff.compare("model.json", "weights.h5", "sample.npy")            # theano vs tensorflow
    report = kdiff.compare("port.keras", sample=x, a="tensorflow", b="jax")     # an array as the sample
    with kdiff.Session("model.json", "weights.h5") as session:                  # both workers kept loaded
        first = session.compare(x)          # diagnosed: every proven fix stays applied on side B
        again = session.compare(x)          # ... so this compares the repaired model
        session.write_fixed("fixed/")       # side B's model with those fixes, in its own format

Options are keywords named like the command line's: ``a``, ``b`` ("BACKEND" or "BACKEND:MODEL[,WEIGHTS]"),
``atol``, ``rtol``, ``gradients``, ``isolate``, ``diagnose``, ``custom_objects``, ``b_layout``, ``loss``,
``labels``, ``timeout``, ``write_fixed``, ``dump``, ``trust_lambda_bytecode``, ``warm``, ``keys``. A mistake raises
kdiff.errors.UsageError or InputError (``message``, ``hint``), as the command line says it with exit 2.
The result is the DiffReport (frozen dataclasses; ``report.to_json()`` is the --json report)."""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from kdiff.cli import diff_options, diff_parser
from kdiff.cli_arguments import resolve_sides
from kdiff.diagnosis.report import diagnosed
from kdiff.diff import run_diff
from kdiff.errors import UsageError
from kdiff.progress import Progress
from kdiff.report import DiffReport
from kdiff.session import DiffSession

FLAGS = {"gradients": ("--no-grad", False), "isolate": ("--isolate", True), "diagnose": ("--no-diagnose", False),
         "trust_lambda_bytecode": ("--trust-lambda-bytecode", True), "warm": ("--warm", True)}
VALUES = {"a": "--a", "b": "--b", "atol": "--atol", "rtol": "--rtol", "custom_objects": "--custom-objects",
          "b_layout": "--b-layout", "loss": "--loss", "timeout": "--timeout", "write_fixed": "--write-fixed",
          "dump": "--dump", "keys": "--keys"}


def compare(model, weights=None, sample=None, *, progress: Progress | None = None, **options) -> DiffReport:
    """Compare ``model`` (with ``weights``) on two backends on ``sample`` (a path or a numpy array),
    diagnose and prove the causes of any divergence, and return the report."""
    if sample is None:
        raise UsageError("api-usage", "compare() needs a sample", "pass sample= a .npy path or a numpy array")
    with _sample_file(sample) as sample_path:
        args = _parsed(model, weights, [sample_path], options)
        a, b, (path,) = resolve_sides(args)
        return run_diff(a, b, path, diff_options(args), progress or Progress(), diagnose=not args.no_diagnose)


class Session:
    """Both workers started and the model loaded once, for many ``compare`` calls."""

    def __init__(self, model, weights=None, *, progress: Progress | None = None, **options):
        self._started = False
        if "write_fixed" in options:
            raise UsageError("api-usage", "a Session writes its repaired model on request",
                             "call session.write_fixed(folder) instead of passing write_fixed=")
        args = _parsed(model, weights, [], options)
        a, b, _ = resolve_sides(args, data=())
        self.diagnose = not args.no_diagnose
        self.progress = progress or Progress()
        self._session = DiffSession(a, b, diff_options(args), self.progress)

    def __enter__(self) -> "Session":
        self._session.__enter__()
        self._started = True
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Stop both workers (also done on leaving the ``with`` block and when the session is collected)."""
        if self._started:
            self._session.close()
            self._started = False

    def __del__(self):
        if getattr(self, "_started", False):
            self.close()

    def compare(self, sample, diagnose: bool | None = None) -> DiffReport:
        """Compare on ``sample`` (a path or a numpy array). Diagnosed (by default, unless the session was made
        with diagnose=False), each proven fix stays applied on side B: later calls compare the repaired model."""
        if not self._started:
            raise UsageError("api-usage", "the session is not started", "use it as 'with kdiff.Session(...) as s:'")
        with _sample_file(sample) as sample_path:
            array = self._session.load_sample(sample_path)
            report = self._session.compare(array, sample_path)
            if self.diagnose if diagnose is None else diagnose:
                report = diagnosed(self._session, array, report, self.progress)
        return report

    def write_fixed(self, folder) -> list[str]:
        """Side B's model as it is now, every fix kept so far applied, written in its framework's format."""
        if not self._started:
            raise UsageError("api-usage", "the session is not started", "use it as 'with kdiff.Session(...) as s:'")
        return self._session.clients["b"].save(str(Path(folder).resolve()))


def _parsed(model, weights, data: list, options: dict):
    """The command line these arguments stand for, parsed by the CLI's own parser (its checks, its defaults)."""
    unknown = sorted(set(options) - set(FLAGS) - set(VALUES) - {"labels"})
    if unknown:
        raise UsageError("api-usage", f"unknown option(s) {', '.join(unknown)}",
                         f"use {', '.join(sorted({*FLAGS, *VALUES, 'labels'}))}")
    argv = [str(model), *([str(weights)] if weights is not None else []), *map(str, data)]
    for name, (flag, when) in FLAGS.items():
        if name in options and bool(options[name]) is when:
            argv.append(flag)
    for name, flag in VALUES.items():
        if options.get(name) is not None:
            argv += [flag, str(options[name])]
    for label in options.get("labels") or ():
        argv += ["--labels", str(label)]
    args = diff_parser("kdiff.compare" if data else "kdiff.Session").parse_args(argv)
    return args


class _sample_file:
    """A sample's path: the one given, or a temporary .npy holding the array given (checked as a file is)."""

    def __init__(self, sample):
        self.sample, self.folder = sample, None

    def __enter__(self) -> str:
        if isinstance(sample := self.sample, (str, Path)):
            return str(sample)
        if not isinstance(sample, np.ndarray):
            raise UsageError("api-usage", f"the sample is a {type(sample).__name__}",
                             "pass a .npy path or one numpy array (batch first)")
        self.folder = tempfile.TemporaryDirectory(prefix="kdiff-sample-")
        path = Path(self.folder.name) / "sample.npy"
        np.save(path, sample, allow_pickle=False)
        return str(path)

    def __exit__(self, *exc) -> None:
        if self.folder is not None:
            self.folder.cleanup()
