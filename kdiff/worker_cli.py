"""``kdiff worker --listen ENDPOINT`` (a side for a coordinator on another host) and ``kdiff serve``
(the warm workers of kdiff.warm: listed, or stopped with --stop)."""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import time

from rich.console import Console
from rich.table import Table

from kdiff import warm
from kdiff.cli_arguments import CommandParser
from kdiff.environments import BACKENDS, backend_spec, ensure_env, env_for
from kdiff.errors import UsageError
from kdiff.protocol.keys import ServerKeys, is_loopback
from kdiff.session import worker_options
from kdiff.ui.progress_view import ConsoleProgress
from kdiff.workers import SOURCE_ROOT, worker_environment


def worker_parser() -> argparse.ArgumentParser:
    parser = CommandParser(prog="kdiff worker", description=(
        "Run one backend's worker here, listening for a kdiff on another host: there, pass "
        "--b BACKEND@ENDPOINT (or --a) and the same --keys. It serves one run at a time until stopped (Ctrl-C)."))
    parser.add_argument("--listen", required=True, metavar="ENDPOINT",
                        help="where to listen: tcp://HOST:PORT (HOST 0.0.0.0 for every interface) or ipc://PATH")
    parser.add_argument("--backend", required=True, choices=BACKENDS, metavar="BACKEND",
                        help=f"the backend to run ({', '.join(BACKENDS)})")
    parser.add_argument("--keras", type=int, choices=(1, 2), default=2,
                        help="for theano: the Keras generation of the files it will be sent (default 2)")
    parser.add_argument("--keys", metavar="DIR", help="CURVE keys from 'kdiff keys DIR' (probe.key_secret and "
                        "authorized_clients/); required on any address but loopback")
    parser.add_argument("--idle-timeout", type=float, default=0.0, metavar="SECONDS",
                        help="stop after this long without a run (default: never)")
    return parser


def serve_parser() -> argparse.ArgumentParser:
    parser = CommandParser(prog="kdiff serve", description=(
        "The warm workers that 'kdiff --warm' (or KDIFF_WARM=1) leaves running: list them, or stop them all. "
        f"Each stops by itself after KDIFF_WARM_IDLE seconds without a run (default {warm.IDLE_SECONDS:g})."))
    parser.add_argument("--stop", action="store_true", help="stop every warm worker")
    return parser


def main(argv: list[str], out: Console, err: Console) -> int:
    if argv[0] == "serve":
        return run_serve(serve_parser().parse_args(argv[1:]), out)
    return run_worker(worker_parser().parse_args(argv[1:]), err)


def run_serve(args: argparse.Namespace, out: Console) -> int:
    if args.stop:
        stopped = warm.stop_all()
        out.print(f"stopped {len(stopped)} warm worker(s)" + "".join(f"\n  {slot['slot']} (pid {slot['pid']})"
                                                                    for slot in stopped), highlight=False)
        return 0
    slots = warm.slots()
    if not slots:
        out.print("no warm workers (a run with --warm, or KDIFF_WARM=1, starts them)", highlight=False)
        return 0
    table = Table(box=None, header_style="bold")
    for column in ("slot", "backend", "pid", "state", "endpoint"):
        table.add_column(column, overflow="fold")
    for slot in slots:
        table.add_row(slot["slot"], slot["backend"], str(slot["pid"]), "in a run" if slot["busy"] else "idle",
                      slot["endpoint"])
    out.print(table)
    return 0


def run_worker(args: argparse.Namespace, err: Console) -> int:
    if not args.keys and not is_loopback(args.listen):
        raise UsageError("keys-needed", f"{args.listen} is not a loopback address: without keys anyone who reaches it "
                         "could drive this worker", "make keys with 'kdiff keys DIR', pass --keys DIR here, and copy "
                         "DIR's client.key_secret and probe.key to the coordinator's host")
    if args.keys:
        try:
            ServerKeys.load(args.keys)
        except (OSError, ValueError) as exc:
            raise UsageError("keys-unreadable", f"--keys {args.keys}: {exc}",
                             "pass the folder 'kdiff keys DIR' wrote (probe.key_secret, authorized_clients/)") from exc
    backend_spec(args.backend)
    env = env_for(args.backend, args.keras)
    with ConsoleProgress(err) as progress:
        progress.stage(f"environment {env}")
        python = str(ensure_env(env, progress.log))
    command = [python, "-m", "backends.listen", "--backend", args.backend, "--endpoint", args.listen,
               "--parent-pid", str(os.getpid()), "--idle-timeout", str(args.idle_timeout)]
    if args.keys:
        command += ["--keys", os.path.abspath(args.keys)]
    for name, value in worker_options(args.backend).items():
        command += ["--option", f"{name}={value}"]
    process = subprocess.Popen(command, env=worker_environment(), cwd=str(SOURCE_ROOT), stdin=subprocess.DEVNULL)
    try:
        code = process.wait()
    except KeyboardInterrupt:
        process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 5
        while process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        if process.poll() is None:
            process.kill()
        process.wait()
        err.print("kdiff worker: stopped", style="yellow")
        return 0
    if code == 2:
        raise UsageError("worker-cannot-listen", f"the {args.backend} worker cannot listen on {args.listen} "
                         "(its message is above)", "choose a free port or a path you can write")
    return code
