"""A backend worker's process: connect to the coordinator, say hello, answer calls.

Run as ``python -m backends.serve --backend NAME --endpoint ... --heartbeat ... --side a``.
The process never outlives its coordinator: on Linux the kernel kills it when its parent
dies (PR_SET_PDEATHSIG), and on every platform it exits when the coordinator's heartbeat
answers stop.
"""
from __future__ import annotations

import argparse
import ctypes
import importlib
import os
import queue
import signal
import sys
import threading
import time
import traceback

import zmq

import backends.common.commands.gradients  # noqa: F401  (each module registers its commands)
import backends.common.commands.layer_changes  # noqa: F401
import backends.common.commands.layers  # noqa: F401
import backends.common.commands.model  # noqa: F401
import backends.common.commands.training  # noqa: F401
from backends import registry
from backends.common.commands import COMMANDS, Call
from backends.common.errors import ModelInputError
from kdiff.protocol.wire import PROTOCOL_VERSION, ProtocolError, decode, encode

PR_SET_PDEATHSIG = 1
EXIT_COORDINATOR_GONE = 75


def keep_to_cpus(cpus: list[int]) -> None:
    """Run on these CPUs only, decided before any framework starts its thread pools (TensorFlow,
    XLA, OpenMP and OpenBLAS size them from the CPUs a process may use)."""
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, cpus)
    os.environ.setdefault("OMP_NUM_THREADS", str(len(cpus)))


def die_with_parent(parent_pid: int) -> None:
    """Ask the kernel to SIGKILL us when the coordinator dies, and check it has not already."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:
        os._exit(EXIT_COORDINATOR_GONE)


class HeartbeatThread(threading.Thread):
    """Pings the coordinator every ``interval`` seconds; exits the process when no pong
    has come for ``timeout`` seconds (the coordinator is dead or stuck)."""

    def __init__(self, context: zmq.Context, endpoint: str, identity: bytes, interval: float, timeout: float):
        super().__init__(name="kdiff-heartbeat", daemon=True)
        self.socket = context.socket(zmq.DEALER)
        self.socket.setsockopt(zmq.IDENTITY, identity)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.connect(endpoint)
        self.interval = interval
        self.timeout = timeout
        self.stopped = threading.Event()

    def run(self) -> None:
        last_pong = time.monotonic()
        while not self.stopped.is_set():
            self.socket.send_multipart(encode({"type": "ping", "pid": os.getpid()}))
            deadline = time.monotonic() + self.interval
            while (remaining := deadline - time.monotonic()) > 0:
                if self.socket.poll(int(remaining * 1000) + 1):
                    self.socket.recv_multipart()
                    last_pong = time.monotonic()
            if time.monotonic() - last_pong > self.timeout:
                sys.stderr.write("kdiff worker: coordinator stopped answering heartbeats; exiting\n")
                os._exit(EXIT_COORDINATOR_GONE)
        self.socket.close()


def error_payload(exc: BaseException) -> dict:
    if isinstance(exc, ModelInputError):
        return {"kind": "input", "code": exc.code, "message": exc.message, "hint": exc.hint}
    return {
        "kind": "internal",
        "code": type(exc).__name__,
        "message": str(exc) or type(exc).__name__,
        "hint": "",
        "traceback": traceback.format_exc(),
    }


PROGRESS_INTERVAL = 1.0  # while a call runs, the coordinator hears from the worker at least this often


class Server:
    """Answers calls one at a time. A call's messages go out from a sender thread, in order, so a
    command that streams goes on computing while the coordinator reads (ZeroMQ's small queues hold
    each send until it does): a worker streams its layer outputs while it computes the gradients.
    The socket is the sender's while a call runs, and read again only once all of it is out.

    While a call runs (and while the framework is imported, before the hello), a ticker sends a
    ``progress`` message for it every PROGRESS_INTERVAL seconds in which nothing else went out: the
    coordinator then tells a worker that works on a long call from one that ignores it (or answers
    another), within seconds instead of at the call's deadline. Whatever bytes arrive, the worker
    answers an error and goes on serving."""

    def __init__(self, socket: zmq.Socket, worker):
        self.socket = socket
        self.worker = worker
        self.outbox: queue.Queue = queue.Queue()
        self.running: int | None = None  # the seq of the call being answered (0: starting up)
        self.running_lock = threading.Lock()  # the ticker queues nothing once the socket is read again
        self.last_sent = time.monotonic()
        threading.Thread(target=self._send_loop, name="kdiff-sender", daemon=True).start()
        threading.Thread(target=self._tick_loop, name="kdiff-progress", daemon=True).start()

    def send(self, header: dict, arrays: dict | None = None) -> None:
        self.outbox.put(encode(header, arrays))  # encoded here: an array that cannot be sent fails the call

    def _send_loop(self) -> None:
        while True:
            frames = self.outbox.get()
            try:
                self.socket.send_multipart(frames, copy=False)
            except zmq.ZMQError as exc:
                sys.stderr.write(f"kdiff worker: could not send a message: {exc}\n")
            finally:
                frames = None
                self.last_sent = time.monotonic()
                self.outbox.task_done()

    def _tick_loop(self) -> None:
        while True:
            time.sleep(PROGRESS_INTERVAL / 2)
            with self.running_lock:
                if self.running is not None and self.outbox.empty() \
                        and time.monotonic() - self.last_sent >= PROGRESS_INTERVAL:
                    self.send({"type": "progress", "seq": self.running})

    def set_running(self, seq: int | None) -> None:
        with self.running_lock:
            self.running = seq

    def serve(self) -> None:
        while True:
            self.outbox.join()  # the last call's messages are all out: the socket is this thread's again
            frames = self.socket.recv_multipart(copy=False)
            try:
                header, arrays = decode(frames)
                seq, cmd = header.get("seq"), header.get("cmd")
                if type(seq) is not int or not isinstance(cmd, str):
                    raise ProtocolError("a call needs an integer 'seq' and a string 'cmd'")
            except ProtocolError as exc:
                self.send({"type": "error", "seq": None, "error": {
                    "kind": "protocol", "code": "malformed-call", "message": str(exc), "hint": ""}})
                continue
            if cmd == "shutdown":
                self.send({"type": "reply", "seq": seq, "result": {}})
                self.outbox.join()
                return
            self.run_call(seq, cmd, header.get("args") or {}, arrays)

    def run_call(self, seq: int, cmd: str, args: dict, arrays: dict) -> None:
        """Answer one call, progress ticking while it runs; every failure goes back as an error message."""
        self.set_running(seq)
        try:
            self.dispatch(seq, cmd, args, arrays)
        except Exception as exc:  # every failure goes back to the coordinator as data
            self.send({"type": "error", "seq": seq, "error": error_payload(exc)})
        finally:
            self.set_running(None)

    def dispatch(self, seq: int, cmd: str, args: dict, arrays: dict) -> None:
        handler = COMMANDS.get(cmd)
        if handler is None:
            raise ValueError(f"unknown command {cmd!r}")
        handler(Call(seq, args, arrays, self.worker, self.send))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m backends.serve")
    parser.add_argument("--backend", required=True)
    parser.add_argument("--side", required=True)
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--heartbeat", required=True)
    parser.add_argument("--parent-pid", type=int, required=True)
    parser.add_argument("--heartbeat-interval", type=float, default=1.0)
    parser.add_argument("--coordinator-timeout", type=float, default=15.0)
    parser.add_argument("--option", action="append", default=[], help="KEY=VALUE passed to the worker")
    parser.add_argument("--worker-module", help="import the Worker class from here instead of backends.NAME.worker")
    parser.add_argument("--cpus", help="run on these CPUs only (e.g. 0,1): the two workers of a diff then do not "
                                       "slow each other down")
    args = parser.parse_args(argv)

    if args.cpus:
        keep_to_cpus([int(cpu) for cpu in args.cpus.split(",")])
    die_with_parent(args.parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the coordinator decides when we stop
    context = zmq.Context()
    identity = args.side.encode()
    HeartbeatThread(context, args.heartbeat, identity, args.heartbeat_interval, args.coordinator_timeout).start()
    socket = context.socket(zmq.DEALER)
    socket.setsockopt(zmq.IDENTITY, identity)
    socket.setsockopt(zmq.LINGER, 2000)
    socket.setsockopt(zmq.SNDHWM, 1)  # when the coordinator does not read us, our sender waits; we hold our results
    socket.connect(args.endpoint)
    server = Server(socket, None)
    server.set_running(0)  # importing a framework takes seconds: the coordinator hears progress meanwhile
    try:
        worker_class = (importlib.import_module(args.worker_module).Worker if args.worker_module
                        else registry.backend(args.backend).worker_class())
        server.worker = worker_class(dict(item.split("=", 1) for item in args.option))
        info = server.worker.start()
    except Exception as exc:
        server.send({"type": "error", "seq": 0, "error": error_payload(exc)})
        server.outbox.join()
        return 1
    server.set_running(None)
    server.send({"type": "hello", "protocol": PROTOCOL_VERSION, "backend": args.backend,
                 "pid": os.getpid(), "python": sys.version.split()[0], **info})
    server.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
