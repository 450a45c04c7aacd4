"""What every kdiff command that starts two workers on a model parses the same way: the
parser that makes usage errors data, the common options, the two sides from the command line,
and the JSON report's destination. kdiff.cli and the subcommands' cli modules import it; it
imports none of them."""
from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from kdiff import __version__
from kdiff.errors import UsageError
from kdiff.metrics import Tolerance
from kdiff.model_files import inspect_model
from kdiff.preflight import check_options
from kdiff.session import Side, client_keys
from kdiff.workers import Timeouts


class CommandParser(argparse.ArgumentParser):
    def error(self, message: str):  # usage errors are data too, rendered like the others
        raise UsageError("usage", message, f"see '{self.prog} --help'")


def add_common_arguments(parser: argparse.ArgumentParser, derived_tolerances: bool = False) -> None:
    """The options every command that starts two workers on a model takes. With ``derived_tolerances``
    --atol/--rtol default to None: each layer's tolerance is then derived (kdiff.tolerances)."""
    parser.add_argument("--a-python", metavar="PATH", help="run side A in this Python instead of kdiff's environment")
    parser.add_argument("--b-python", metavar="PATH", help="run side B in this Python instead of kdiff's environment")
    if derived_tolerances:
        derived = "default: each layer's own, derived from its dtype and reduction length"
        parser.add_argument("--atol", type=float, help=f"absolute tolerance for every layer ({derived}; "
                                                       f"{Tolerance.atol:g} when only --rtol is given)")
        parser.add_argument("--rtol", type=float, help=f"relative tolerance for every layer ({derived}; "
                                                       f"{Tolerance.rtol:g} when only --atol is given)")
    else:
        parser.add_argument("--atol", type=float, default=Tolerance.atol, help="absolute tolerance (default %(default)g)")
        parser.add_argument("--rtol", type=float, default=Tolerance.rtol, help="relative tolerance (default %(default)g)")
    add_report_arguments(parser)
    parser.add_argument("--custom-objects", metavar="FILE.py",
                        help="a Python file defining the functions (e.g. for Lambda layers) and layer classes the "
                             "model needs, by name")
    parser.add_argument("--timeout", type=float, default=Timeouts.call, metavar="SECONDS",
                        help="deadline of one worker call (default %(default)g)")
    parser.add_argument("--warm", action="store_true",
                        help="use warm workers, and leave them running for the next run (also KDIFF_WARM=1): their "
                             "frameworks stay imported and the last model loaded; 'kdiff serve --stop' stops them")
    parser.add_argument("--keys", metavar="DIR", help="CURVE keys from 'kdiff keys DIR', for a side on another host "
                        "(--b BACKEND@tcp://HOST:PORT, where 'kdiff worker --listen' runs)")
    parser.add_argument("--version", action="version", version=f"kdiff {__version__}")


def add_report_arguments(parser: argparse.ArgumentParser) -> None:
    """Where the report goes besides the terminal: --json and --html."""
    parser.add_argument("--json", metavar="PATH", help="write the report as JSON ('-' for stdout)")
    parser.add_argument("--html", metavar="PATH", help="write the report as one self-contained HTML page (opens offline)")


def given_tolerance(args: argparse.Namespace) -> tuple[Tolerance, bool]:
    """The tolerance --atol/--rtol give (the other at its default), and whether the user gave one: when
    not, each layer's tolerance is derived (kdiff.tolerances) and the returned one is only the fallback."""
    given = args.atol is not None or args.rtol is not None
    return (Tolerance(Tolerance.atol if args.atol is None else args.atol, Tolerance.rtol if args.rtol is None
                      else args.rtol, "given: --atol/--rtol" if given else ""), given)


def side_spec(text: str | None) -> tuple[str | None, str | None, str | None]:
    """'BACKEND[@ENDPOINT][:MODEL[,WEIGHTS]]' as (backend, model, weights)."""
    backend, _, model, weights = side_parts(text)
    return backend, model, weights


ENDPOINT = re.compile(r"@((?:tcp://(?:\[[^\]]*\]|[^:/\[\]]+):\d+)|(?:ipc://[^:]+))")


def side_parts(text: str | None) -> tuple[str | None, str | None, str | None, str | None]:
    """'BACKEND[@ENDPOINT][:MODEL[,WEIGHTS]]' as (backend, endpoint, model, weights): ENDPOINT is where a
    worker listens ('kdiff worker --listen'), tcp://HOST:PORT or ipc://PATH."""
    if not text:
        return None, None, None, None
    endpoint = None
    backend_end = len(text)
    for stop in ("@", ":"):
        if stop in text:
            backend_end = min(backend_end, text.index(stop))
    backend, rest = text[:backend_end], text[backend_end:]
    if rest.startswith("@"):
        match = ENDPOINT.match(rest)
        if match is None:
            raise UsageError("bad-endpoint", f"{text!r}: after '@' kdiff expects tcp://HOST:PORT or ipc://PATH",
                             "e.g. --b tensorflow@tcp://gpu-box:5570 --keys DIR")
        endpoint, rest = match.group(1), rest[match.end():]
    files = rest[1:] if rest.startswith(":") else rest
    model, _, weights = files.partition(",")
    return backend or None, endpoint, model or None, weights or None


def resolve_sides(args: argparse.Namespace, data: tuple[str, ...] = ("SAMPLE",),
                  example: str = "kdiff model.json weights.h5 sample.npy") -> tuple[Side, Side, list[str]]:
    """Both sides from 'MODEL [WEIGHTS] DATA...' and '--a/--b BACKEND[:MODEL[,WEIGHTS]]'; the data files."""
    (a_backend, a_model, a_weights), (b_backend, b_model, b_weights) = side_spec(args.a), side_spec(args.b)
    files, count, names = list(args.files), len(data), " ".join(data)
    if a_model and b_model:
        if len(files) != count:
            raise UsageError("usage", f"both sides name their files, so only {names} {'is' if count == 1 else 'are'} "
                             f"expected, got {len(files)} file(s)",
                             "e.g. kdiff --a theano:model.json,weights.h5 --b tensorflow:port.keras " + names.lower())
        shared_model = shared_weights = None
    elif len(files) in (count + 1, count + 2):
        shared_model, shared_weights = files[0], files[1] if len(files) == count + 2 else None
    else:
        raise UsageError("usage", f"expected MODEL [WEIGHTS] {names}, got {len(files)} file(s)", f"e.g. {example}")
    a_model, a_weights = (a_model, a_weights) if a_model else (shared_model, shared_weights)
    b_model, b_weights = (b_model, b_weights) if b_model else (shared_model, shared_weights)
    check_options(args, {name.lower().removesuffix('.npy'): path for name, path in zip(data, files[-count:])})
    model_file = inspect_model(a_model, a_weights, getattr(args, "custom_objects", None))
    keras3 = model_file.keras_major == 3
    # a tf.keras 2.x file never ran on Theano: by default its own Keras (tf_keras) is side A
    default_a = "tensorflow" if keras3 else "tf-keras" if model_file.tf_keras else "theano"
    a_endpoint, b_endpoint = side_parts(args.a)[1], side_parts(args.b)[1]
    for name, endpoint, python in (("a", a_endpoint, args.a_python), ("b", b_endpoint, args.b_python)):
        if endpoint and python:
            raise UsageError("usage", f"side {name} is a worker at {endpoint}, and --{name}-python names an interpreter "
                             "here", f"leave out --{name}-python (the worker's host has its own environment)")
    for endpoint in filter(None, (a_endpoint, b_endpoint)):
        client_keys(getattr(args, "keys", None), endpoint)  # keys needed and readable: said before anything starts
    a = Side("a", a_backend or default_a, a_model, a_weights, args.a_python, endpoint=a_endpoint)
    b = Side("b", b_backend or ("jax" if keras3 else "tensorflow"), b_model, b_weights, args.b_python,
             layout=_checked_layout(getattr(args, "b_layout", None), b_backend or ("jax" if keras3 else "tensorflow"),
                                    b_model, b_weights, getattr(args, "custom_objects", None)), endpoint=b_endpoint)
    return a, b, files[-count:]


def _checked_layout(layout: str | None, backend: str, model: str, weights: str | None,
                    custom_objects: str | None = None) -> str | None:
    """--b-layout, when side B can be built in it: a Keras 1/2 file on a modern Keras backend."""
    if not layout:
        return None
    if backend.startswith("theano"):
        raise UsageError("b-layout-backend", f"--b-layout {layout}: the {backend} worker builds a model only as "
                         "its file states", "use --b tensorflow, jax, torch or tf-keras")
    if inspect_model(model, weights, custom_objects).keras_major == 3:
        raise UsageError("b-layout-keras3", f"--b-layout {layout}: side B's model is a Keras 3 file, which is "
                         "built in the layout it states", "--b-layout rebuilds Keras 1/2 files; pass a Keras 3 "
                         "port as it is (--b BACKEND:port.keras) and kdiff feeds it the sample in its layout")
    return layout


def write_json(report: dict, path: str | None) -> None:
    """The report as JSON to PATH, or to stdout for '-'."""
    if not path:
        return
    text = json.dumps(report, indent=2)
    if path == "-":
        print(text)
    else:
        write_output(path, text + "\n", "--json")


def write_reports(report: dict, args: argparse.Namespace, title: str = "kdiff report") -> None:
    """The report's JSON document to --json and its page to --html, where the command line asks."""
    write_json(report, getattr(args, "json", None))
    if getattr(args, "html", None):
        from kdiff.ui.html import render_html

        write_output(args.html, render_html(report, title), "--html")


def write_output(path: str, text: str, option: str) -> None:
    """A report file, written at the end of a run (its folder was checked before the run started)."""
    try:
        Path(path).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UsageError("output-unwritable", f"{option} {path} cannot be written ({exc.strerror or exc})",
                         f"give {option} a path in a folder you can write") from exc
