"""``kdiff train MODEL [WEIGHTS] X.npy Y.npy --optimizer NAME[:k=v,...] --loss NAME ...``"""
from __future__ import annotations

import argparse

from rich.console import Console

from kdiff import full_model_h5, warm
from kdiff.cli_arguments import (CommandParser, add_common_arguments, given_tolerance, resolve_sides, side_spec,
                                 write_reports)
from kdiff.session import DiffOptions
from kdiff.errors import UsageError
from kdiff.train.session import OptimizerSpec, TrainOptions, run_training
from kdiff.ui.train_view import TrainView, render_train_report
from kdiff.workers import Timeouts


def train_parser() -> argparse.ArgumentParser:
    parser = CommandParser(prog="kdiff train", description=(
        "Take the same training steps on two backends, each with its framework's real optimizer, and compare "
        "every step's loss, activations, gradients, optimizer slots and weight updates; where the updates "
        "diverge, name the optimizer setting or formula that differs and prove it."))
    parser.add_argument("files", nargs="+", metavar="FILE",
                        help="MODEL [WEIGHTS] X.npy Y.npy; only X.npy Y.npy when both sides name their own files")
    parser.add_argument("--optimizer", metavar="NAME[:k=v,...]",
                        help="both sides' optimizer, e.g. adam or rmsprop:rho=0.9 (each framework's defaults for "
                             "what is not named); default: the one a full-model .h5 was compiled with")
    parser.add_argument("--a-optimizer", metavar="[NAME][:k=v,...]", help="side A's optimizer or extra settings")
    parser.add_argument("--b-optimizer", metavar="[NAME][:k=v,...]",
                        help="side B's optimizer or extra settings; iterations=N starts the optimizer's step "
                             "counter at N (e.g. a resumed optimizer), as in adam:iterations=5")
    parser.add_argument("--loss", help="a Keras loss name, e.g. mse or categorical_crossentropy; default: the one a "
                                        "full-model .h5 was compiled with")
    parser.add_argument("--steps", type=int, default=5, help="training steps (default %(default)s)")
    parser.add_argument("--batch-size", type=int, help="samples per step (default: all of X, up to 32)")
    parser.add_argument("--a", dest="a", metavar="BACKEND[:MODEL[,WEIGHTS]]", help="side A, as for 'kdiff'")
    parser.add_argument("--b", dest="b", metavar="BACKEND[:MODEL[,WEIGHTS]]", help="side B, as for 'kdiff'")
    add_common_arguments(parser, derived_tolerances=True)
    return parser


def parse_optimizer(text: str, option: str) -> OptimizerSpec:
    """'adam:epsilon=1e-8,beta_1=0.9' -> OptimizerSpec('adam', {'epsilon': 1e-08, 'beta_1': 0.9})."""
    name, _, settings = text.partition(":")
    config = {}
    for item in filter(None, settings.split(",")):
        key, equals, value = item.partition("=")
        if not equals or not key.strip():
            raise UsageError("usage", f"{option}: {item!r} is not KEY=VALUE", f"e.g. {option} adam:epsilon=1e-8")
        config[key.strip()] = _value(value.strip())
    iterations = config.get("iterations")
    if "iterations" in config and (isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 0):
        raise UsageError("usage", f"{option}: iterations={iterations!r} is not a step count",
                         f"give a whole number >= 0, e.g. {option} {name.strip() or 'adam'}:iterations=5")
    return OptimizerSpec(name.strip(), config)


def _value(text: str):
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _from_file(args: argparse.Namespace) -> full_model_h5.TrainingSetup | None:
    """The optimizer and loss side A's full-model .h5 was compiled with (its training_config), where the user
    leaves one of them out; None when they name both, or the model file carries none."""
    own_names = all(getattr(args, f"{side}_optimizer") and
                    parse_optimizer(getattr(args, f"{side}_optimizer"), f"--{side}-optimizer").name for side in "ab")
    if args.loss and (args.optimizer or own_names):
        return None
    model = side_spec(args.a)[1] or (args.files[0] if len(args.files) in (3, 4) else None)
    if not model or not full_model_h5.is_hdf5(model):
        return None
    return full_model_h5.training_setup(model)


def _said(setup: full_model_h5.TrainingSetup, args: argparse.Namespace, model: str) -> str:
    """What was taken from the file, for the output."""
    taken = []
    if not args.optimizer:
        settings = ", ".join(f"{key}={value}" for key, value in setup.settings.items())
        taken.append(f"optimizer {setup.optimizer}" + (f" ({settings})" if settings else ""))
    if not args.loss:
        taken.append(f"loss {setup.loss}")
    left_out = f"; not taken: {', '.join(setup.left_out)}" if setup.left_out and not args.optimizer else ""
    return f"kdiff train: {' and '.join(taken)} from {model}'s training configuration{left_out}"


def _optimizers(args: argparse.Namespace, from_file=None) -> tuple[OptimizerSpec, OptimizerSpec]:
    shared = parse_optimizer(args.optimizer, "--optimizer") if args.optimizer else \
        OptimizerSpec(from_file.optimizer, dict(from_file.settings)) if from_file else OptimizerSpec("")
    specs = []
    for side in "ab":
        text = getattr(args, f"{side}_optimizer")
        own = parse_optimizer(text, f"--{side}-optimizer") if text else OptimizerSpec("")
        name = own.name or shared.name
        if not name:
            raise UsageError("usage", f"no optimizer for side {side.upper()}",
                             "name one with --optimizer NAME (or --a-optimizer / --b-optimizer)")
        specs.append(OptimizerSpec(name, {**shared.config, **own.config}))
    return specs[0], specs[1]


def main(argv: list[str], out: Console, err: Console) -> int:
    args = train_parser().parse_args(argv)
    from_file = _from_file(args)
    optimizers = _optimizers(args, from_file)   # bad settings fail before anything starts
    loss = args.loss or (from_file.loss if from_file else None)
    if not loss:
        raise UsageError("usage", "no loss to train with", "name one with --loss NAME (a full-model .h5 saved after "
                         "compile() carries its own)")
    a, b, (x_path, y_path) = resolve_sides(args, ("X.npy", "Y.npy"),
                                           "kdiff train model.json weights.h5 x.npy y.npy --optimizer adam --loss mse")
    if from_file:
        (out if args.json != "-" else err).print(_said(from_file, args, a.model), highlight=False)
    tolerance, given = given_tolerance(args)  # derived per layer for the forward check unless given
    options = TrainOptions(
        optimizers=optimizers, loss=loss, steps=args.steps, batch_size=args.batch_size,
        diff=DiffOptions(tolerance=tolerance, derived_tolerances=not given, custom_objects=args.custom_objects,
                         timeouts=Timeouts(call=args.timeout), gradients=False, warm=warm.enabled(args.warm),
                         keys=args.keys))
    with TrainView(err) as view:
        report = run_training(a, b, x_path, y_path, options, view)
    write_reports(report.to_json(), args, f"kdiff train: {a.backend} against {b.backend}")
    if args.json != "-":
        render_train_report(report, out)
    return report.exit_code
