"""``kdiff attach ENDPOINT [ENDPOINT_B]`` and ``kdiff keys DIR``."""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from rich.console import Console

from kdiff.attach.client import ProbeClient, ProbeUnreachable
from kdiff.attach.precision import write_float64_copy
from kdiff.attach.replay import live_side, replay, require_same_batch
from kdiff.attach.snapshot import cached_model, check_snapshot
from kdiff.protocol.snapshot import Snapshot
from kdiff.cli_arguments import CommandParser, add_report_arguments, given_tolerance, write_reports
from kdiff.session import DiffOptions, Side
from kdiff.environments import BACKENDS
from kdiff.errors import InputError, UsageError
from kdiff.metrics import Tolerance
from kdiff.preflight import check_options
from kdiff.protocol.keys import ClientKeys, make_keys
from kdiff.report import DiffReport
from kdiff.ui.attach_view import LiveLosses, render_attach_report
from kdiff.ui.progress_view import ConsoleProgress
from kdiff.protocol.wire import ProtocolError
from kdiff.workers import Timeouts

HELLO_SECONDS = 10.0


def attach_parser() -> argparse.ArgumentParser:
    parser = CommandParser(prog="kdiff attach", description=(
        "Attach to live training runs that use kdiff.probe. One endpoint: take a snapshot (weights, batch, every "
        "layer's output and gradient) and replay it in a reference worker, layer by layer. Two endpoints: follow "
        "both runs' losses, then compare their snapshots at the same step."))
    parser.add_argument("endpoints", nargs="+", metavar="ENDPOINT", help="where a probe listens, e.g. "
                        "tcp://127.0.0.1:5557; a second ENDPOINT compares two runs")
    parser.add_argument("--against", metavar="BACKEND[:float64]",
                        help=f"the reference ({', '.join(BACKENDS)}), optionally in float64; default the run's own "
                             "backend on CPU in float32")
    parser.add_argument("--at-step", type=int, metavar="N", help="the step to snapshot (default: the next one, "
                        "or with two runs the next step both still have ahead)")
    parser.add_argument("--keys", metavar="DIR", help="CURVE keys from 'kdiff keys DIR' (client.key_secret, "
                        "probe.key), for probes on other machines")
    parser.add_argument("--timeout", type=float, default=600.0, metavar="SECONDS",
                        help="how long to wait for the snapshot step, and for each worker call (default %(default)g)")
    derived = "default: each layer's own, derived from its dtype and reduction length"
    parser.add_argument("--atol", type=float, help=f"absolute tolerance for every layer ({derived}; "
                                                   f"{Tolerance.atol:g} when only --rtol is given)")
    parser.add_argument("--rtol", type=float, help=f"relative tolerance for every layer ({derived}; "
                                                   f"{Tolerance.rtol:g} when only --atol is given)")
    parser.add_argument("--no-diagnose", action="store_true", help="only compare: do not look for causes")
    add_report_arguments(parser)
    return parser


def keys_parser() -> argparse.ArgumentParser:
    parser = CommandParser(prog="kdiff keys", description="Make CURVE key pairs for a probe and a coordinator.")
    parser.add_argument("directory", metavar="DIR", help="an empty or new folder")
    return parser


def main(argv: list[str], out: Console, err: Console) -> int:
    if argv[0] == "keys":
        return run_keys(keys_parser().parse_args(argv[1:]), out)
    return run_attach(attach_parser().parse_args(argv[1:]), out, err)


def run_keys(args: argparse.Namespace, out: Console) -> int:
    try:
        written = make_keys(args.directory)
    except (FileExistsError, RuntimeError) as exc:
        raise InputError("keys-not-written", str(exc), "pass a new folder to 'kdiff keys'") from exc
    for path in written:
        out.print(str(path), highlight=False)
    out.print("the job: kdiff.probe.ServerKeys.load(DIR) (probe.key_secret, authorized_clients/); "
              "the coordinator: kdiff attach ENDPOINT --keys DIR (client.key_secret, probe.key)", highlight=False)
    return 0


def run_attach(args: argparse.Namespace, out: Console, err: Console) -> int:
    check_options(args)
    if args.at_step is not None and args.at_step < 0:
        raise UsageError("option-range", f"--at-step {args.at_step}: a step number is 0 or more", "e.g. --at-step 100")
    if len(args.endpoints) > 2:
        raise InputError("usage", f"attach follows one or two runs, got {len(args.endpoints)} endpoints",
                         "kdiff attach ENDPOINT [ENDPOINT_B]")
    keys = ClientKeys.load(args.keys) if args.keys else None
    labels = ["run"] if len(args.endpoints) == 1 else ["A", "B"]
    clients = [ProbeClient(endpoint, keys, label) for label, endpoint in zip(labels, args.endpoints)]
    try:
        live = LiveLosses(err, labels)
        snapshots = take_snapshots(clients, args.at_step, args.timeout, live, err)
    finally:
        for client in clients:
            client.close()
    tolerance, given = given_tolerance(args)  # derived per layer unless given, as kdiff's and kdiff train's
    options = DiffOptions(tolerance=tolerance, derived_tolerances=not given, timeouts=Timeouts(call=args.timeout))
    with tempfile.TemporaryDirectory(prefix="kdiff-attach-") as folder, ConsoleProgress(err) as progress:
        if len(snapshots) == 1:
            (snapshot,) = snapshots
            a = live_side("a", snapshot, Path(folder, "a"))
            b = reference_side(args.against or snapshot.backend, Path(a.model))
            report = replay(a, b, snapshot, str(Path(folder, "a", "batch.npy")), options, progress,
                            diagnose=not args.no_diagnose)
        else:
            require_same_batch(*snapshots)
            a, b = (live_side(side, s, Path(folder, side), f"run {side.upper()}") for side, s in zip("ab", snapshots))
            report = replay(a, b, snapshots[0], str(Path(folder, "a", "batch.npy")), options, progress,
                            diagnose=False)
    runs = [{**run_summary(label, client.endpoint, snapshot), "losses": live.history.get(label, [])}
            for label, client, snapshot in zip(labels, clients, snapshots)]
    write_outputs(report, runs, args, out)
    return report.exit_code


def take_snapshots(clients: list[ProbeClient], at_step: int | None, timeout: float, live: LiveLosses,
                   err: Console) -> list[Snapshot]:
    """Greet every probe, follow their losses, and take one snapshot of each at the same step."""
    hellos = [client.hello(HELLO_SECONDS) for client in clients]
    for client, hello in zip(clients, hellos):
        err.print(f"kdiff: attached to {client.endpoint}: model '{hello.get('model')}' on {hello.get('backend')}, "
                  f"step {hello.get('step')}", highlight=False)
        client.on_metrics = live
        client.request("attach")
    if at_step is None and len(clients) > 1:
        at_step = max(hello["step"] for hello in hellos) + 1
    for client, hello in zip(clients, hellos):
        held = hello.get("model_hash")   # the model file is sent only if this machine does not keep it yet
        client.request("snapshot", **({"at_step": at_step} if at_step is not None else {}),
                       **({"model_hash": held} if isinstance(held, str) and held and cached_model(held) else {}))
    found: dict[int, Snapshot] = {}
    deadline = time.monotonic() + timeout
    while len(found) < len(clients):
        if time.monotonic() > deadline:
            raise ProbeUnreachable("probe-no-snapshot", f"no snapshot within {timeout:g} s",
                                   "is the job still training? raise --timeout for slow steps")
        for index, client in enumerate(clients):
            if index not in found:
                message = client.next_message({"snapshot"}, 0.1)
                if message is not None:
                    found[index] = _checked(client, *message)
    return [found[index] for index in range(len(clients))]


def _checked(client: ProbeClient, header: dict, arrays: dict) -> Snapshot:
    try:
        return check_snapshot(header, arrays)
    except ProtocolError as exc:
        raise ProbeUnreachable("probe-malformed", f"the probe at {client.label} sent a malformed snapshot: {exc}") \
            from exc


def reference_side(against: str, model: Path) -> Side:
    backend, _, precision = against.partition(":")
    if precision not in ("", "float32", "float64"):
        raise InputError("usage", f"unknown precision '{precision}' in --against {against}",
                         "use BACKEND, BACKEND:float32 or BACKEND:float64")
    if precision == "float64":
        model = write_float64_copy(model)
    return Side("b", backend, str(model))


def run_summary(label: str, endpoint: str, snapshot: Snapshot) -> dict:
    return {"label": label, "endpoint": endpoint, "step": snapshot.step, "loss": snapshot.loss,
            "megabytes": snapshot.nbytes / 2**20, "capture_seconds": snapshot.header["capture_seconds"]}


def write_outputs(report: DiffReport, runs: list[dict], args, out: Console) -> None:
    write_reports({**report.to_json(), "step": runs[0]["step"], "live": runs}, args,
                  "kdiff attach: " + " and ".join(run["label"] for run in runs))
    if args.json != "-":
        render_attach_report(report, runs, out)
