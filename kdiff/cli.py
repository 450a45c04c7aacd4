"""The command line: ``kdiff MODEL [WEIGHTS] SAMPLE`` and ``kdiff env ...``."""
from __future__ import annotations

import argparse
import os
import signal
import sys

from rich.console import Console
from rich.table import Table

from kdiff.bug_log import one_line, write_bug_log
from kdiff.diff import run_diff
from kdiff.session import DiffOptions
from kdiff.environments import BACKENDS, ENVS, describe_envs, ensure_env, env_python, env_spec, env_state
from kdiff.layouts import LAYOUTS
from kdiff.errors import EXIT_BAD_INPUT, EXIT_INTERRUPTED, InternalError, KdiffError, UsageError
from kdiff.report import DiffReport
from kdiff.ui.errors import render_error
from kdiff.ui.progress_view import ConsoleProgress
from kdiff.ui.report_view import render_report
from kdiff import warm
from kdiff.workers import Timeouts
from kdiff.cli_arguments import CommandParser, add_common_arguments, given_tolerance, resolve_sides, write_reports



def diff_parser(prog: str = "kdiff") -> argparse.ArgumentParser:
    parser = CommandParser(prog=prog, description=(
        "Compare a model layer by layer on two backends, find where they start to disagree, name the "
        "cause and prove it. Other commands: 'kdiff fix', 'kdiff train', 'kdiff attach', 'kdiff report', "
        "'kdiff env list|create|path', 'kdiff serve [--stop]', 'kdiff worker --listen', 'kdiff keys'."))
    parser.add_argument("files", nargs="+", metavar="FILE",
                        help="MODEL [WEIGHTS] SAMPLE: model.json (Keras 1/2/3) and its weights, a full-model .h5 "
                             "(model.save() of Keras 1/2 or tf.keras 2.x) or model.keras alone, a .npy sample; only "
                             "SAMPLE when both sides name their own files")
    parser.add_argument("--a", dest="a", metavar="BACKEND[:MODEL[,WEIGHTS]]",
                        help=f"side A ({', '.join(BACKENDS)}), optionally with its own files; default theano, "
                             "or tensorflow for Keras 3 files, tf-keras for files tf.keras 2.x wrote")
    parser.add_argument("--b", dest="b", metavar="BACKEND[:MODEL[,WEIGHTS]]",
                        help="side B, optionally with its own files (e.g. a port: --b tensorflow:port.keras); "
                             "default tensorflow, or jax for Keras 3 files")
    parser.add_argument("--b-layout", choices=LAYOUTS, metavar="channels_last|channels_first",
                        help="build side B's model in this memory layout (a Keras 1/2 file on tensorflow, jax, torch "
                             "or tf-keras): side B is fed the sample with its channels axis moved, and its values "
                             "are moved back to compare")
    parser.add_argument("--isolate", action="store_true",
                        help="also run each of side B's layers alone on side A's inputs: every layer gets its own "
                             "error, and 'diverged' marks exactly the layers whose own computation differs")
    parser.add_argument("--no-grad", action="store_true", help="do not compare gradients")
    parser.add_argument("--labels", action="append", default=[], metavar="Y.npy",
                        help="labels for --loss, one file per model output (in output order); the gradients are "
                             "then those of the model's own loss, not of a projection of its outputs")
    parser.add_argument("--loss", metavar="NAME", help="a Keras loss name (e.g. categorical_crossentropy) for --labels")
    parser.add_argument("--no-diagnose", action="store_true",
                        help="only compare: do not look for the causes of a divergence")
    parser.add_argument("--write-fixed", metavar="DIR",
                        help="write side B's model with every proven fix applied (Keras 3: model.keras; tf-keras: "
                             "model.json + weights.h5), then check it afresh against side A")
    add_common_arguments(parser, derived_tolerances=True)
    parser.add_argument("--dump", metavar="DIR", help="write DIR/a.npz and DIR/b.npz with every layer's output")
    parser.add_argument("--trust-lambda-bytecode", action="store_true",
                        help="run the marshalled Lambda bytecode stored in the model file (only for files you trust)")
    return parser


def fix_parser() -> argparse.ArgumentParser:
    parser = diff_parser("kdiff fix")
    parser.description = ("Write side B's model with every proven fix applied, and prove that, loaded afresh, it "
                          "reproduces side A on every layer. Exit 0 only then.")
    parser.add_argument("-o", "--output", required=True, metavar="DIR", help="where to write the repaired model")
    return parser


def env_parser() -> argparse.ArgumentParser:
    parser = CommandParser(prog="kdiff env", description="kdiff's backend environments")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="show the environments, their state and where they are")
    create = commands.add_parser("create", help="build environments ahead of time")
    create.add_argument("names", nargs="+", metavar="NAME", help=f"one of: {', '.join(ENVS)}, or 'all'")
    path = commands.add_parser("path", help="print the Python interpreter of an environment")
    path.add_argument("name", metavar="NAME")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    out, err = _console(sys.stdout), _console(sys.stderr)
    signal.signal(signal.SIGTERM, _terminate)
    # Ctrl-C must always stop kdiff and its workers, even where kdiff was started with SIGINT
    # ignored (a non-interactive shell's background job): then Python installs no handler itself.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        if argv and argv[0] == "env":
            return run_env(env_parser().parse_args(argv[1:]), out, err)
        if argv and argv[0] in ("attach", "keys"):
            from kdiff.attach.cli import main as attach_main

            return attach_main(argv, out, err)
        if argv and argv[0] in ("serve", "worker"):
            from kdiff.worker_cli import main as worker_main

            return worker_main(argv, out, err)
        if argv and argv[0] == "report":
            from kdiff.saved_report import main as report_main

            return report_main(argv[1:], out)
        if argv and argv[0] == "train":
            from kdiff.train.cli import main as train_main

            return train_main(argv[1:], out, err)
        if argv and argv[0] == "fix":
            args = fix_parser().parse_args(argv[1:])
            args.write_fixed = args.output
            report = run_diff_command(args, out, err)
            return 0 if report.written is not None and report.written.verified else 1
        return run_diff_command(diff_parser().parse_args(argv), out, err).exit_code
    except KdiffError as error:
        render_error(error, err)
        return error.exit_code
    except KeyboardInterrupt:
        err.print("kdiff: interrupted; workers stopped", style="yellow")
        return EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001 -- kdiff's own bug: its own exit code, its traceback in a log
        error = internal_error(exc)
        render_error(error, err)
        return error.exit_code


def internal_error(exc: BaseException) -> InternalError:
    """The error to show for an exception kdiff did not expect, its traceback written to a log file."""
    return InternalError(one_line(exc), write_bug_log(exc))


def _console(stream) -> Console:
    """Rich on a terminal; plain text 120 columns wide (or $COLUMNS) when piped or redirected."""
    if stream.isatty() or os.environ.get("COLUMNS"):
        return Console(file=stream)
    return Console(file=stream, width=120)


def _terminate(signum, frame):
    raise KeyboardInterrupt  # unwinds through every 'finally' that stops workers


def _checked_loss(args: argparse.Namespace) -> str | None:
    """--loss and --labels come together, and only where gradients are compared."""
    if bool(args.loss) != bool(args.labels):
        given, missing = ("--loss", "--labels Y.npy") if args.loss else ("--labels", "--loss NAME")
        raise UsageError("loss-without-labels", f"{given} was given without {missing}",
                         "pass both: the labels, and the Keras loss to compute on them")
    if args.loss and args.no_grad:
        raise UsageError("loss-without-gradients", "--loss and --labels shape the gradients, and --no-grad skips them",
                         "leave out --no-grad, or --loss and --labels")
    return args.loss or None


def diff_options(args: argparse.Namespace) -> DiffOptions:
    """The diff's options from its parsed command line (kdiff.api builds the same command line)."""
    tolerance, given = given_tolerance(args)
    return DiffOptions(tolerance=tolerance, derived_tolerances=not given, custom_objects=args.custom_objects,
                       trust_lambda_bytecode=args.trust_lambda_bytecode, dump_dir=args.dump,
                       timeouts=Timeouts(call=args.timeout), write_fixed=args.write_fixed,
                       gradients=not args.no_grad, isolate=args.isolate, loss=_checked_loss(args),
                       labels=tuple(args.labels), warm=warm.enabled(args.warm), keys=args.keys)


def run_diff_command(args: argparse.Namespace, out: Console, err: Console) -> DiffReport:
    a, b, (sample,) = resolve_sides(args)
    options = diff_options(args)
    with ConsoleProgress(err) as progress:
        report = run_diff(a, b, sample, options, progress, diagnose=not args.no_diagnose)
    write_reports(report.to_json(), args, f"kdiff: {a.backend} against {b.backend}")
    if args.json != "-":
        render_report(report, out)
    return report


def run_env(args: argparse.Namespace, out: Console, err: Console) -> int:
    if args.command == "list":
        envs = describe_envs()
        table = Table(box=None, header_style="bold")
        # names and states whole however narrow the terminal: a long path folds instead
        table.add_column("name", no_wrap=True, min_width=max(len(env["name"]) for env in envs))
        table.add_column("state", no_wrap=True, min_width=max(len(env["state"]) for env in envs))
        table.add_column("path", overflow="fold")
        table.add_column("what")
        for env in envs:
            style = {"ready": "green", "stale": "yellow"}.get(env["state"], "dim")
            table.add_row(env["name"], f"[{style}]{env['state']}[/]", env["path"], env["description"])
        out.print(table)
        return 0
    if args.command == "create":
        names = list(ENVS) if args.names == ["all"] else args.names
        for name in names:
            env_spec(name)
        with ConsoleProgress(err) as progress:
            for name in names:
                progress.stage(f"environment {name}")
                ensure_env(name, progress.log)
        return 0
    if args.command == "path":
        env_spec(args.name)
        if env_state(args.name) != "ready":
            raise KdiffError("env-missing", f"environment '{args.name}' does not exist yet",
                             f"create it with 'kdiff env create {args.name}'")
        print(env_python(args.name))
        return 0
    return EXIT_BAD_INPUT
